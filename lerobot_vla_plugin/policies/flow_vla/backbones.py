"""The two prefix encoders behind `FlowVLAConfig.backbone`: images + instruction + state → prefix tokens.

Both return `(tokens, mask)` with tokens (batch, length, out_dim) and mask (batch, length) bool, True for
real tokens. The action expert only ever sees this interface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig
from lerobot_vla_plugin.policies.flow_vla.layers import EncoderLayer
from lerobot_vla_plugin.policies.flow_vla.tokenizer import BYTE_VOCAB_SIZE


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1),
        nn.GroupNorm(min(8, out_channels), out_channels),
        nn.GELU(approximate="tanh"),
    )


def expected_positions(heat: Tensor, temperature: Tensor) -> Tensor:
    """(N, K, H, W) scores -> the expected (x, y) in [-1, 1] of each map's softmax over the image, (N, K, 2)."""
    _, _, height, width = heat.shape
    attention = torch.softmax(heat.flatten(2) / temperature, dim=-1)
    ys = torch.linspace(-1.0, 1.0, height, device=heat.device, dtype=attention.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=heat.device, dtype=attention.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return attention @ torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)


class SpatialSoftmaxKeypoints(nn.Module):
    """K learned detectors over a feature map, each reduced to the expected (x, y) of its softmax over the
    image (Levine et al. 2016, "End-to-end training of deep visuomotor policies"), then embedded as one token.
    Coordinates are in [-1, 1] across the image, so the token says *where* a thing is, at sub-cell precision."""

    def __init__(self, in_channels: int, keypoints: int, dim: int):
        super().__init__()
        self.detector = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1),
            nn.GroupNorm(min(8, in_channels), in_channels),
            nn.GELU(approximate="tanh"),
            nn.Conv2d(in_channels, keypoints, kernel_size=1),
        )
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.coordinate_proj = nn.Linear(2, dim)
        self.keypoint_embedding = nn.Parameter(torch.randn(keypoints, dim) * 0.02)

    def coordinates(self, features: Tensor) -> Tensor:
        """features (N, C, H, W) -> each detector's expected (x, y) in [-1, 1], (N, keypoints, 2)."""
        return expected_positions(self.detector(features), self.log_temperature.exp())

    def embed(self, coordinates: Tensor) -> Tensor:
        """coordinates (N, keypoints, 2) -> tokens (N, keypoints, dim)."""
        return self.coordinate_proj(coordinates) + self.keypoint_embedding


class InstructionFiLM(nn.Module):
    """A per-channel (scale, shift) for each conv stage from the pooled instruction (FiLM, Perez et al. 2018).

    Zero-initialised heads make it the identity at first, so adding it to a trained encoder changes nothing
    until training uses it."""

    def __init__(self, dim: int, stage_channels: tuple[int, ...]):
        super().__init__()
        self.pooled_mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(approximate="tanh"))
        self.heads = nn.ModuleList(nn.Linear(dim, 2 * channels) for channels in stage_channels)
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, text_embeddings: Tensor, text_mask: Tensor) -> list[tuple[Tensor, Tensor]]:
        """text (batch, length, dim), mask (batch, length) -> one (scale, shift) pair of (batch, C) per stage."""
        hidden = self.pooled_mlp(pooled_instruction(text_embeddings, text_mask))
        return [tuple(head(hidden).chunk(2, dim=-1)) for head in self.heads]


def pooled_instruction(text_embeddings: Tensor, text_mask: Tensor) -> Tensor:
    """The mean of an instruction's real token embeddings: (batch, length, dim), (batch, length) -> (batch, dim)."""
    weights = text_mask[..., None].to(text_embeddings.dtype)
    return (text_embeddings * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@dataclass
class KeypointView:
    """Where the keypoint detectors look, with the instruction that chose what to look for: what an object readout
    that must generalise to unseen layouts reads (a few coordinates, not tokens it could memorise scenes from)."""

    coordinates: Tensor  # (batch, cameras * keypoints, 2) in [-1, 1]
    instruction: Tensor  # (batch, dim) pooled instruction embedding


class SmallPrefixEncoder(nn.Module):
    """Compact CNN per camera (shared weights, per-camera embedding) + byte-text embedding + state token,
    fused by a small transformer. Trainable from scratch on a CPU."""

    def __init__(self, config: FlowVLAConfig):
        super().__init__()
        dim = config.dim_model
        height, width = config.image_size
        channels = (3, *config.image_encoder_channels)
        downsampling = 2 ** len(channels)  # every block and the final projection halve the resolution
        if height % downsampling or width % downsampling:
            raise ValueError(
                f"image_size {tuple(config.image_size)} must be a multiple of {downsampling} on both sides "
                "(e.g. 96x128 or 128x128)."
            )
        self.image_encoder = nn.Sequential(
            *[conv_block(channels[i], channels[i + 1]) for i in range(len(channels) - 1)],
            nn.Conv2d(channels[-1], dim, kernel_size=3, stride=2, padding=1),
        )
        # Keypoints read the map after the second block (stride 4), where a few-pixel object is still a cell.
        self.keypoint_stage = min(2, len(channels) - 1)
        self.keypoints = (
            SpatialSoftmaxKeypoints(channels[self.keypoint_stage], config.image_keypoints, dim)
            if config.image_keypoints > 0 else None
        )
        self.film = InstructionFiLM(dim, channels[1:]) if config.language_film else None
        grid = (height // downsampling) * (width // downsampling)
        self.image_position = nn.Parameter(torch.randn(grid, dim) * 0.02)
        self.camera_embedding = nn.Embedding(config.max_cameras, dim)
        self.token_embedding = nn.Embedding(BYTE_VOCAB_SIZE, dim)
        self.text_position = nn.Parameter(torch.randn(config.tokenizer_max_length, dim) * 0.02)
        self.state_proj = nn.Linear(config.max_state_dim, dim)
        self.layers = nn.ModuleList(
            EncoderLayer(dim, config.n_heads, config.dim_feedforward_multiplier, config.dropout)
            for _ in range(config.n_prefix_layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim
        self.image_size = tuple(config.image_size)

    def convolve(self, images: list[Tensor], film: list[tuple[Tensor, Tensor]] | None = None,
                 stop_at_keypoints: bool = False) -> tuple[Tensor, Tensor]:
        """(feature map at the keypoint stage, final feature map), cameras stacked camera-major along the batch.
        images: one (batch, 3, H, W) tensor in [0, 1] per camera, already resized; film: InstructionFiLM's
        (scale, shift) per conv stage, applied to every camera."""
        features = (torch.cat(images, dim=0) - 0.5) / 0.25  # one conv pass for all cameras
        early = features
        for stage, block in enumerate(self.image_encoder):
            features = block(features)
            if film is not None and stage < len(film):
                scale, shift = (part.repeat(len(images), 1)[:, :, None, None] for part in film[stage])
                features = features * (1.0 + scale) + shift
            if stage + 1 == self.keypoint_stage:
                early = features
                if stop_at_keypoints:
                    break
        return early, features

    def text_embeddings(self, lang_tokens: Tensor) -> Tensor:
        return self.token_embedding(lang_tokens) + self.text_position[: lang_tokens.shape[1]]

    def keypoint_coordinates(self, images: list[Tensor], lang_tokens: Tensor, lang_mask: Tensor) -> Tensor:
        """Where each keypoint detector looks, (batch, cameras * keypoints, 2) in [-1, 1]: what a probe reads to
        tell whether the encoder locates an object."""
        if self.keypoints is None:
            raise ValueError("this policy has no keypoints (image_keypoints = 0)")
        film = None if self.film is None else self.film(self.text_embeddings(lang_tokens), lang_mask.bool())
        early, _ = self.convolve(images, film, stop_at_keypoints=True)
        coordinates = self.keypoints.coordinates(early)
        batch = images[0].shape[0]
        return coordinates.view(len(images), batch, -1, 2).transpose(0, 1).reshape(batch, -1, 2)

    def encode_images(self, images: list[Tensor], film: list[tuple[Tensor, Tensor]] | None = None
                      ) -> tuple[Tensor, Tensor | None]:
        """(camera tokens (batch, cameras * tokens, dim), keypoint coordinates (batch, cameras * keypoints, 2) or
        None without keypoints). images: one (batch, 3, H, W) tensor in [0, 1] per camera, already resized; film:
        see `convolve`."""
        batch = images[0].shape[0]
        early, features = self.convolve(images, film)
        features = features.flatten(2).transpose(1, 2) + self.image_position
        coordinates = None
        if self.keypoints is not None:
            coordinates = self.keypoints.coordinates(early)
            features = torch.cat([features, self.keypoints.embed(coordinates)], dim=1)
            coordinates = coordinates.view(len(images), batch, -1, 2).transpose(0, 1).reshape(batch, -1, 2)
        features = features.view(len(images), batch, *features.shape[1:])
        camera = self.camera_embedding.weight[: len(images), None, None, :]
        return (features + camera).transpose(0, 1).reshape(batch, -1, features.shape[-1]), coordinates

    def forward(
        self, images: list[Tensor], lang_tokens: Tensor, lang_mask: Tensor, state: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        tokens, mask, _ = self.encode_with_keypoints(images, lang_tokens, lang_mask, state)
        return tokens, mask

    def encode_with_keypoints(
        self, images: list[Tensor], lang_tokens: Tensor, lang_mask: Tensor, state: Tensor | None
    ) -> tuple[Tensor, Tensor, KeypointView | None]:
        """forward's (tokens, mask) plus where the keypoints look (None without cameras or keypoints)."""
        batch = lang_tokens.shape[0]
        view = None
        text_tokens = self.text_embeddings(lang_tokens)
        parts, masks = [], []
        if images:
            film = None if self.film is None else self.film(text_tokens, lang_mask.bool())
            image_tokens, coordinates = self.encode_images(images, film)
            if coordinates is not None:
                view = KeypointView(coordinates, pooled_instruction(text_tokens, lang_mask.bool()))
            parts.append(image_tokens)
            masks.append(torch.ones(image_tokens.shape[:2], dtype=torch.bool, device=image_tokens.device))
        parts.append(text_tokens)
        masks.append(lang_mask.bool())
        if state is not None:
            parts.append(self.state_proj(state)[:, None, :])
            masks.append(torch.ones(batch, 1, dtype=torch.bool, device=state.device))
        tokens, mask = torch.cat(parts, dim=1), torch.cat(masks, dim=1)
        attention_mask = mask[:, None, None, :]
        for layer in self.layers:
            tokens = layer(tokens, attention_mask)
        return self.norm(tokens), mask, view


class PretrainedPrefixEncoder(nn.Module):
    """A SmolVLM-style model from `transformers` (Hub id or local dir): vision tower + connector + the first
    `num_backbone_layers` decoder layers. The vision tower is frozen by default."""

    def __init__(self, config: FlowVLAConfig):
        super().__init__()
        from transformers import AutoConfig, AutoModelForImageTextToText

        source = str(config.pretrained_backbone)
        try:
            backbone_config = AutoConfig.from_pretrained(source)
        except OSError as error:
            raise OSError(
                f"Could not load the backbone config from '{source}'. Pass a local directory or a Hub id that "
                "is reachable (or cached, with HF_HUB_OFFLINE=1). Original error: " + str(error)
            ) from error
        text_config = getattr(backbone_config, "text_config", None)
        if text_config is None or getattr(backbone_config, "vision_config", None) is None:
            raise ValueError(
                f"'{source}' is a {backbone_config.model_type} model; flow_vla needs a vision-language model "
                "with vision_config and text_config (SmolVLM/Idefics3 style)."
            )
        text_config.num_hidden_layers = min(config.num_backbone_layers, text_config.num_hidden_layers)
        if config.load_backbone_weights:
            full = AutoModelForImageTextToText.from_pretrained(source, config=backbone_config)
        else:
            full = AutoModelForImageTextToText.from_config(backbone_config)
        inner = full.model
        for name in ("vision_model", "connector", "text_model"):
            if not hasattr(inner, name):
                raise ValueError(f"'{source}' has no '{name}'; flow_vla supports SmolVLM/Idefics3-style models.")
        self.vision_model = inner.vision_model
        self.connector = inner.connector
        self.text_model = inner.text_model
        self.text_model.layers = self.text_model.layers[: text_config.num_hidden_layers]
        del full  # drops the LM head
        hidden = text_config.hidden_size
        self.state_proj = nn.Linear(config.max_state_dim, hidden)
        self.vision_image_size = int(backbone_config.vision_config.image_size)
        self.out_dim = hidden
        if config.freeze_vision_encoder:
            for param in [*self.vision_model.parameters(), *self.connector.parameters()]:
                param.requires_grad_(False)
        if not config.train_backbone_text_layers:
            for param in self.text_model.parameters():
                param.requires_grad_(False)

    def encode_images(self, images: list[Tensor]) -> Tensor:
        batch = images[0].shape[0]
        size = self.vision_image_size
        stacked = torch.cat(images, dim=0)
        stacked = F.interpolate(stacked, size=(size, size), mode="bilinear", align_corners=False) * 2.0 - 1.0
        dtype = next(self.vision_model.parameters()).dtype
        patch_mask = torch.ones(
            stacked.shape[0], size // self.vision_model.config.patch_size, size // self.vision_model.config.patch_size,
            dtype=torch.bool, device=stacked.device,
        )
        hidden = self.vision_model(pixel_values=stacked.to(dtype), patch_attention_mask=patch_mask).last_hidden_state
        tokens = self.connector(hidden)
        tokens = tokens.view(len(images), batch, *tokens.shape[1:])
        return tokens.transpose(0, 1).reshape(batch, -1, tokens.shape[-1])

    def forward(
        self, images: list[Tensor], lang_tokens: Tensor, lang_mask: Tensor, state: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        batch = lang_tokens.shape[0]
        embed = self.text_model.get_input_embeddings()
        parts, masks = [], []
        if images:
            image_tokens = self.encode_images(images).to(embed.weight.dtype)
            parts.append(image_tokens)
            masks.append(torch.ones(image_tokens.shape[:2], dtype=torch.bool, device=image_tokens.device))
        parts.append(embed(lang_tokens))
        masks.append(lang_mask.bool())
        if state is not None:
            parts.append(self.state_proj(state).to(embed.weight.dtype)[:, None, :])
            masks.append(torch.ones(batch, 1, dtype=torch.bool, device=state.device))
        tokens, mask = torch.cat(parts, dim=1), torch.cat(masks, dim=1)
        hidden = self.text_model(inputs_embeds=tokens, attention_mask=mask.long()).last_hidden_state
        return hidden.float(), mask


def make_prefix_encoder(config: FlowVLAConfig) -> nn.Module:
    if config.backbone == "pretrained":
        return PretrainedPrefixEncoder(config)
    return SmallPrefixEncoder(config)
