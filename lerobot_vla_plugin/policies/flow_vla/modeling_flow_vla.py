"""`flow_vla`: a vision-language prefix, an action expert that cross-attends to it, flow matching over chunks.

Conventions (pi0/SmolVLA): t = 1 is pure noise, t = 0 is data; x_t = t·noise + (1 − t)·actions; the network
predicts the velocity noise − actions; sampling integrates from t = 1 to 0 with Euler steps. The expert is
also conditioned on the step size d it is asked to take (a shortcut model): d = 0 is the instantaneous
velocity, d = 1/n is a jump that stays accurate with only n steps, which is what makes 1–2 steps usable.
"""

from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import torch
import torch.nn.functional as F
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import (
    ACTION,
    OBS_LANGUAGE_ATTENTION_MASK,
    OBS_LANGUAGE_TOKENS,
    OBS_STATE,
)
from torch import Tensor, nn

from lerobot_vla_plugin.policies.flow_vla import processor_flow_vla  # noqa: F401  (registers processor steps)
from lerobot_vla_plugin.policies.flow_vla.backbones import (
    KeypointView,
    expected_positions,
    make_prefix_encoder,
    pooled_instruction,
)
from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig
from lerobot_vla_plugin.policies.flow_vla.keyposes import KEYPOSE_JOINTS, ObjectKeyposes
from lerobot_vla_plugin.policies.flow_vla.layers import (
    ExpertLayer,
    sinusoidal_embedding,
)
from lerobot_vla_plugin.policies.flow_vla.rtc import (
    RTCGuidance,
    pad_leftover,
    prefix_steps,
    rtc_guidance_from_config,
    sample_training_delays,
)
from lerobot_vla_plugin.policies.flow_vla.uncertainty import corrupt_observations

# Per-layer (key, value), attention mask, the state's offset of the clean chunk (None without state_residual),
# the observation's conditioning vector added to the flow-time conditioning of every layer (None without
# object_position_conditioning or object_keyposes), and the objects' keyposes (B, heights x objects, 4) in
# normalised action units (None without object_keyposes).
PrefixCache = tuple[list[tuple[Tensor, Tensor]], Tensor, Tensor | None, Tensor | None, Tensor | None]


def pad_last_dim(tensor: Tensor, size: int) -> Tensor:
    if tensor.shape[-1] > size:
        raise ValueError(f"vector of size {tensor.shape[-1]} does not fit the configured maximum {size}")
    return F.pad(tensor, (0, size - tensor.shape[-1]))


class ActionExpert(nn.Module):
    """Small transformer over the action chunk; reads the prefix only through cached keys/values."""

    def __init__(self, config: FlowVLAConfig, context_dim: int):
        super().__init__()
        dim = config.expert_dim
        self.config = config
        self.action_in = nn.Linear(config.max_action_dim, dim)
        self.position = nn.Parameter(torch.randn(config.chunk_size, dim) * 0.02)
        # Fixed sine-cosine code of each step's index in the chunk (periods 2 steps .. 4 chunks), at the scale of
        # the action embedding: near t = 1 the input is noise, and the step index is all that tells the steps of
        # the chunk apart. With the small learned code alone the expert predicted nearly flat chunks.
        steps = torch.arange(config.chunk_size, dtype=torch.float32) / config.chunk_size
        step_code = sinusoidal_embedding(steps, dim, 2.0 / config.chunk_size, 4.0)
        self.register_buffer("step_code", step_code if config.chunk_step_encoding == "sinusoidal"
                             else torch.zeros_like(step_code), persistent=False)
        self.cond_mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.layers = nn.ModuleList(
            ExpertLayer(dim, config.expert_heads, context_dim, config.dim_feedforward_multiplier, config.dropout)
            for _ in range(config.n_expert_layers)
        )
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.final_modulation = nn.Linear(dim, 2 * dim)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)
        self.action_out = nn.Linear(dim, config.max_action_dim)
        # state_residual: the clean chunk is predicted as a learned linear map of the current (normalised) state
        # plus the transformer's output. Initialised to the identity, so an untrained policy holds its pose and
        # the transformer only has to learn the motion away from it.
        self.state_to_action = None
        if config.state_residual:
            self.state_to_action = nn.Linear(config.max_state_dim, config.max_action_dim)
            with torch.no_grad():
                self.state_to_action.weight.copy_(torch.eye(config.max_action_dim, config.max_state_dim))
                self.state_to_action.bias.zero_()
                self.action_out.weight.zero_()
                self.action_out.bias.zero_()
        # Training-time RTC: flags the chunk steps given as clean actions (only then, so older checkpoints load).
        self.prefix_embedding = (
            nn.Parameter(torch.randn(dim) * 0.02) if config.rtc_training_max_delay > 0 else None
        )
        # object_keyposes: each step adds a learned share of every object's hover keypose to its arm joints, so
        # heading for the cube's exact angles is one gate the expert opens, not a map it must learn. Zero at the
        # start: the expert begins as without keyposes.
        self.keypose_gate = None
        if config.object_keyposes:
            keyposes = config.object_position_count * len(config.object_keypose_heights_m())
            self.keypose_gate = nn.Linear(dim, keyposes * KEYPOSE_JOINTS)
            nn.init.zeros_(self.keypose_gate.weight)
            nn.init.zeros_(self.keypose_gate.bias)

    def cache_prefix(self, prefix: Tensor, prefix_mask: Tensor, state: Tensor | None = None,
                     condition: Tensor | None = None, keyposes: Tensor | None = None) -> PrefixCache:
        """Project the prefix to every layer's keys/values once per observation (and the state to its offset);
        `condition` (B, dim) joins the flow-time conditioning of every layer; `keyposes` (B, keyposes, 4) are
        what the keypose gates scale."""
        kv = [layer.cross_attn.project_kv(prefix) for layer in self.layers]
        offset = None
        if self.state_to_action is not None and state is not None:
            offset = self.state_to_action(state.to(prefix.dtype))
        return kv, prefix_mask[:, None, None, :], offset, condition, keyposes

    def forward(
        self,
        x_t: Tensor,
        time: Tensor,
        step_size: Tensor,
        cache: PrefixCache,
        valid_steps: Tensor | None = None,
        prefix_steps: Tensor | None = None,
    ) -> Tensor:
        """Velocity for x_t. valid_steps (batch, chunk) bool hides padded steps from the self-attention, so
        whatever the dataset put past an episode's end cannot leak into the loss of real steps. prefix_steps
        (batch, chunk) bool marks steps whose x_t is a given clean action (training-time RTC)."""
        dim = self.position.shape[-1]
        cond = torch.cat(
            [
                sinusoidal_embedding(time, dim, self.config.min_period, self.config.max_period),
                sinusoidal_embedding(step_size, dim, self.config.min_period, self.config.max_period),
            ],
            dim=-1,
        ).to(x_t.dtype)
        cond = self.cond_mlp(cond)
        kv_per_layer, mask, offset, condition, keyposes = cache
        if condition is not None:
            cond = cond + condition.to(cond.dtype)
        x = self.action_in(x_t) + self.position[: x_t.shape[1]] + self.step_code[: x_t.shape[1]] + cond[:, None, :]
        if prefix_steps is not None and self.prefix_embedding is not None:
            x = x + prefix_steps[:, :, None].to(x.dtype) * self.prefix_embedding
        cond = F.silu(cond)
        action_mask = None if valid_steps is None else valid_steps[:, None, None, :]
        for layer, kv in zip(self.layers, kv_per_layer, strict=True):
            x = layer(x, cond, kv, mask, action_mask)
        scale, shift = self.final_modulation(cond)[:, None, :].chunk(2, dim=-1)
        features = self.final_norm(x) * (1 + scale) + shift
        output = self.action_out(features)
        if self.keypose_gate is not None and keyposes is not None:
            gates = self.keypose_gate(features).view(*features.shape[:2], *keyposes.shape[1:])
            toward = (gates * keyposes[:, None].to(gates.dtype)).sum(dim=2)
            output = output + F.pad(toward, (0, output.shape[-1] - toward.shape[-1]))
        return output if offset is None else output + offset[:, None, :]


def repeat_cache(cache: PrefixCache, repeats: int) -> PrefixCache:
    kv, mask, *per_sample = cache
    return (
        [(k.repeat_interleave(repeats, 0), v.repeat_interleave(repeats, 0)) for k, v in kv],
        mask.repeat_interleave(repeats, 0),
        *(None if part is None else part.repeat_interleave(repeats, 0) for part in per_sample),
    )


def select_cache(cache: PrefixCache, index: Tensor | slice) -> PrefixCache:
    kv, mask, *per_sample = cache
    return ([(k[index], v[index]) for k, v in kv], mask[index],
            *(None if part is None else part[index] for part in per_sample))


def detach_cache(cache: PrefixCache) -> PrefixCache:
    kv, mask, *per_sample = cache
    return ([(k.detach(), v.detach()) for k, v in kv], mask,
            *(None if part is None else part.detach() for part in per_sample))


class PrefixReadout(nn.Module):
    """Learned queries that read the prefix (one cross-attention), each predicting `out_features` numbers: the
    training-only auxiliaries (far-future actions, object positions) whose gradient reaches the image encoder."""

    def __init__(self, num_queries: int, out_features: int, context_dim: int):
        super().__init__()
        heads = next(h for h in (8, 4, 2, 1) if context_dim % h == 0)
        self.queries = nn.Parameter(torch.randn(num_queries, context_dim) * 0.02)
        self.attention = nn.MultiheadAttention(context_dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(context_dim)
        self.out = nn.Linear(context_dim, out_features)

    def forward(self, prefix: Tensor, prefix_mask: Tensor) -> Tensor:
        """prefix (B, L, D), mask (B, L) True for real tokens -> (B, num_queries, out_features)."""
        queries = self.queries[None].expand(prefix.shape[0], -1, -1).to(prefix.dtype)
        read, _ = self.attention(queries, prefix, prefix, key_padding_mask=~prefix_mask, need_weights=False)
        return self.out(self.norm(read + queries))


class KeypointObjectReadout(nn.Module):
    """Each object's table x/y from where the image keypoints look and the pooled instruction (which cube is the
    instructed one), by a small MLP. A few dozen image coordinates map smoothly to table positions, so what it learns
    from a hundred layouts holds on new ones; a readout attending over all image tokens can instead memorise each
    training scene and stays at chance on an unseen one."""

    def __init__(self, count: int, cameras: list[int], keypoints: int, dim: int, hidden: int = 256):
        """cameras: which cameras' keypoints it reads (positions in the policy's image features)."""
        super().__init__()
        self.count = count
        self.register_buffer("coordinate_rows", torch.tensor(
            [camera * keypoints + k for camera in cameras for k in range(keypoints)]), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * len(self.coordinate_rows) + dim, hidden), nn.GELU(approximate="tanh"),
            nn.Linear(hidden, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, 2 * count),
        )

    def forward(self, view: KeypointView) -> Tensor:
        """-> (B, count, 2)"""
        coordinates = view.coordinates.index_select(1, self.coordinate_rows)
        features = torch.cat([coordinates.flatten(1), view.instruction], dim=-1)
        return self.mlp(features).view(-1, self.count, 2)


class AppearanceObjectReadout(nn.Module):
    """Each object found by its colour, then put in the instruction's order (object_readout_source="appearance").

    Every object has its own few detectors, and a detector scores each pixel of one camera's image by that pixel's
    colour alone (1x1 convolutions), reduced to the expected (x, y) of its softmax over the image. An object's slot
    is a small MLP of its own detectors' coordinates only, so a slot can be where a colour is and nowhere else: it
    cannot become "the cube the arm heads for", which a readout of context-aware keypoints learns from the
    demonstrations (the arm's heading tells which cube is instructed in most frames, but not in the first one, the
    one that counts). The slots learn the objects by name (a recorded feature in a fixed order), and the pooled
    instruction orders them (a soft permutation)."""

    def __init__(self, count: int, camera: int, dim: int, detectors_per_object: int = 4, hidden: int = 64):
        """camera: the position in the policy's image features of the camera it reads."""
        super().__init__()
        self.count, self.camera, self.detectors_per_object = count, camera, detectors_per_object
        self.colour = nn.Sequential(nn.Conv2d(3, 16, kernel_size=1), nn.GELU(approximate="tanh"),
                                    nn.Conv2d(16, count * detectors_per_object, kernel_size=1))
        # A sharp softmax from the start: a cube covers about 1 % of the image, and a detector must outscore the
        # rest of the image by ln(100) before its expected position moves onto the cube.
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.1)))
        self.slot_mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * detectors_per_object, hidden), nn.GELU(approximate="tanh"),
                          nn.Linear(hidden, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, 2))
            for _ in range(count))
        self.slot_order = nn.Linear(dim, count * count)  # instruction -> logits, row = object, column = slot
        nn.init.zeros_(self.slot_order.weight)  # every slot equally likely at first
        nn.init.zeros_(self.slot_order.bias)

    def coordinates(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> each detector's expected (x, y) in [-1, 1], (B, count * detectors, 2)."""
        return expected_positions(self.colour((image.float() - 0.5) / 0.25), self.log_temperature.exp())

    def forward(self, images: list[Tensor], instruction: Tensor) -> tuple[Tensor, SlotReadout]:
        """images: the policy's prepared camera images; instruction (B, dim) pooled -> (estimate (B, count, 2) in
        instruction order, the slots before the instruction ordered them)"""
        groups = self.coordinates(images[self.camera]).split(self.detectors_per_object, dim=1)
        slots = torch.stack([mlp(group.flatten(1)) for mlp, group in zip(self.slot_mlps, groups, strict=True)], 1)
        order_logits = self.slot_order(instruction).view(-1, self.count, self.count)
        # The ordered estimate's loss trains the order only: the slots learn from the objects by name.
        return torch.softmax(order_logits, dim=-1) @ slots.detach(), SlotReadout(slots, order_logits)


class SlotReadout(NamedTuple):
    """A readout by appearance before the instruction orders it."""

    slots: Tensor  # (B, count, 2) decimetres, one per object in an order the instruction does not change
    order_logits: Tensor  # (B, count, count): row = object in instruction order, column = slot


def slot_readout_loss(readout: SlotReadout, named: Tensor, instructed: Tensor, mask: Tensor) -> Tensor:
    """Teach the slots where each object is by name, and the instruction which named object it means.

    named: (B, count, 2) the objects in their fixed order (red cube, blue cube, bowl), the slots' targets;
    instructed: (B, count, 2) the same objects in the instruction's order; mask: (B, count), 1 for each object
    (instruction order) the readout learns from. Which named object each instructed one is comes from matching
    the two (the same recorded positions), and the order logits learn it by cross-entropy."""
    which = torch.cdist(instructed.float(), named.float()).argmin(dim=-1)  # (B, count): instructed i = named which[i]
    named_mask = torch.zeros_like(mask).scatter_(1, which, mask)[..., None].expand_as(named)
    squared_error = masked_mean_squared_error(readout.slots, named, named_mask)
    order_loss = F.cross_entropy(readout.order_logits.flatten(0, 1).float(), which.flatten())
    return squared_error + order_loss


OBJECT_POSITION_SCALE = 10.0  # metres -> decimetres for the object-position target


class ObjectPositionTokens(nn.Module):
    """One prefix token per object from its estimated table x/y (decimetres): an MLP of the position plus the
    object's own learned embedding, so the expert knows which token is the instructed cube, the other, the bowl."""

    def __init__(self, count: int, dim: int):
        super().__init__()
        self.identity = nn.Parameter(torch.randn(count, dim) * 0.02)
        self.embed = nn.Sequential(nn.Linear(2, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, positions: Tensor) -> Tensor:
        """(B, count, 2) -> (B, count, dim)"""
        return self.embed(positions) + self.identity.to(positions.dtype)


class EncodedScene(NamedTuple):
    """FlowVLAModel.encode_scene's result."""

    prefix: Tensor  # (B, L, D) tokens
    mask: Tensor  # (B, L), True for real tokens
    state: Tensor | None  # the padded state
    estimate: Tensor | None  # where the objects are, (B, objects, 2) decimetres, instructed cube first
    carried: Tensor | None  # what the object tokens carry, (B, objects, 2)
    slots: SlotReadout | None  # object_readout_source="appearance": the readout before the instruction orders it


def masked_mean_squared_error(predicted: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    return (((predicted.float() - target.float()) ** 2) * mask).sum() / mask.sum().clamp(min=1.0)


class FlowVLAModel(nn.Module):
    def __init__(self, config: FlowVLAConfig, action_stats: dict | None = None):
        """action_stats: the dataset's "action" statistics, which object_keyposes needs (stored in the weights)."""
        super().__init__()
        self.config = config
        self.prefix_encoder = make_prefix_encoder(config)
        self.expert = ActionExpert(config, context_dim=self.prefix_encoder.out_dim)
        context_dim = self.prefix_encoder.out_dim
        self.future_readout = (
            PrefixReadout(len(config.future_action_offsets), config.max_action_dim, context_dim)
            if config.future_action_offsets else None
        )
        self.object_readout = None  # where each object is on the table (x, y)
        if config.object_position_loss_weight > 0 and config.object_readout_source == "keypoints":
            self.object_readout = KeypointObjectReadout(
                config.object_position_count, config.object_readout_camera_indices(), config.image_keypoints,
                context_dim,
            )
        elif config.object_position_loss_weight > 0 and config.object_readout_source == "appearance":
            self.object_readout = AppearanceObjectReadout(
                config.object_position_count, config.object_readout_camera_indices()[0], context_dim)
        elif config.object_position_loss_weight > 0:
            self.object_readout = PrefixReadout(config.object_position_count, 2, context_dim)
        self.object_tokens = (
            ObjectPositionTokens(config.object_position_count, context_dim) if config.object_position_tokens else None
        )
        self.object_condition = None  # the same positions, straight into every expert layer's conditioning
        if config.object_position_conditioning:
            self.object_condition = nn.Sequential(
                nn.Linear(2 * config.object_position_count, config.expert_dim), nn.SiLU(),
                nn.Linear(config.expert_dim, config.expert_dim))
        self.object_keyposes = None  # the hover keyposes of the same positions, as conditioning and gated targets
        self.keypose_condition = None
        if config.object_keyposes:
            heights = config.object_keypose_heights_m()
            self.object_keyposes = ObjectKeyposes(config.object_keyposes, heights, OBJECT_POSITION_SCALE, action_stats)
            self.keypose_condition = nn.Sequential(
                nn.Linear(KEYPOSE_JOINTS * config.object_position_count * len(heights), config.expert_dim), nn.SiLU(),
                nn.Linear(config.expert_dim, config.expert_dim))
            nn.init.zeros_(self.keypose_condition[-1].weight)
            nn.init.zeros_(self.keypose_condition[-1].bias)

    # ----- inputs -----------------------------------------------------------------------------------------
    def prepare_images(self, batch: dict[str, Tensor]) -> list[Tensor]:
        images = []
        for key in self.config.image_features:
            if key not in batch:
                raise KeyError(
                    f"Camera '{key}' is missing from the batch (keys: {sorted(batch)}). The policy was trained "
                    "with it; map your camera names with --rename_map or the preprocessor's rename step."
                )
            image = batch[key]
            if image.ndim == 5:  # (batch, time, C, H, W) from the dataset's observation_delta_indices
                image = image[:, -1]
            image = image.float()
            if tuple(image.shape[-2:]) != tuple(self.config.image_size):
                image = F.interpolate(
                    image, size=tuple(self.config.image_size), mode="bilinear", align_corners=False, antialias=True
                )
            if self.training and self.config.image_augmentation:
                image = augment_images(image, self.config.augmentation_shift_px, self.config.augmentation_color_jitter)
            images.append(image)
        return images

    def prepare_state(self, batch: dict[str, Tensor]) -> Tensor | None:
        if self.config.robot_state_feature is None:
            return None
        state = batch[OBS_STATE]
        if state.ndim == 3:
            state = state[:, -1]
        return pad_last_dim(state.float(), self.config.max_state_dim)

    def drop_state(self, state: Tensor | None) -> Tensor | None:
        """Training: the mean state (zero, normalised) for a config.state_dropout share of the samples."""
        if state is None or not self.training or self.config.state_dropout <= 0:
            return state
        keep = torch.rand(state.shape[0], 1, device=state.device) >= self.config.state_dropout
        return state * keep.to(state.dtype)

    def encode_prefix(self, batch: dict[str, Tensor]) -> PrefixCache:
        scene = self.encode_scene(batch)
        return self.cache_scene(scene.prefix, scene.mask, scene.state, scene.carried)

    def cache_scene(self, prefix: Tensor, mask: Tensor, state: Tensor | None, carried: Tensor | None) -> PrefixCache:
        """The expert's cache of an encoded scene; `carried`: the object positions its tokens carry."""
        condition = keyposes = None
        if self.object_condition is not None and carried is not None:
            condition = self.object_condition(carried.flatten(1))
        if self.object_keyposes is not None and carried is not None:
            keyposes = self.object_keyposes(carried)
            from_keyposes = self.keypose_condition(keyposes.flatten(1))
            condition = from_keyposes if condition is None else condition + from_keyposes
        return self.expert.cache_prefix(prefix, mask, state, condition, keyposes)

    def encode_prefix_tokens(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """(prefix tokens, their mask, the padded state) of an observation batch."""
        scene = self.encode_scene(batch)
        return scene.prefix, scene.mask, scene.state

    def encode_scene(self, batch: dict[str, Tensor], with_estimate: bool = False,
                     token_positions: tuple[Tensor, Tensor] | None = None) -> EncodedScene:
        """encode_prefix_tokens plus the object-position estimate (B, objects, 2) in decimetres: computed when it
        becomes object tokens or `with_estimate` asks (the training target), else None. With
        object_readout_source="keypoints" it reads where the image keypoints look, not the fused prefix.
        `token_positions`, training only: ((B, objects, 2) in decimetres, (B,) mask), what the object tokens of
        the masked samples carry instead of the estimate (see FlowVLAConfig.object_tokens_recorded_noise_m).
        Then the positions the object tokens carry (B, objects, 2), or None without object tokens; last the
        readout's slots before the instruction ordered them with object_readout_source="appearance" (else None)."""
        if OBS_LANGUAGE_TOKENS not in batch:
            raise KeyError(
                f"'{OBS_LANGUAGE_TOKENS}' is missing: run observations through the flow_vla preprocessor "
                "(make_flow_vla_pre_post_processors or the checkpoint's policy_preprocessor.json), which "
                "tokenizes the 'task' instruction."
            )
        state = self.prepare_state(batch)
        inputs = (self.prepare_images(batch), batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK],
                  self.drop_state(state))
        keypoints = None
        if self.config.object_readout_source == "keypoints":
            prefix, mask, keypoints = self.prefix_encoder.encode_with_keypoints(*inputs)
        else:
            prefix, mask = self.prefix_encoder(*inputs)
        if self.object_readout is None or not (with_estimate or self.object_tokens is not None):
            return EncodedScene(prefix, mask, state, None, None, None)
        slots = None
        if self.config.object_readout_source == "keypoints":
            if keypoints is None:
                raise ValueError("object_readout_source='keypoints' reads the camera keypoints, but this batch has "
                                 f"no camera image (the policy expects {list(self.config.image_features)}).")
            estimate = self.object_readout(keypoints)
        elif self.config.object_readout_source == "appearance":
            tokens, token_mask = batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK].bool()
            instruction = pooled_instruction(self.prefix_encoder.text_embeddings(tokens), token_mask)
            estimate, slots = self.object_readout(inputs[0], instruction)
        else:
            estimate = self.object_readout(prefix, mask)
        carried = None
        if self.object_tokens is not None:
            carried = estimate.detach()
            if token_positions is not None:
                positions, use = token_positions
                carried = torch.where(use.bool()[:, None, None], positions.to(carried.dtype), carried)
            tokens = self.object_tokens(carried)
            prefix = torch.cat([prefix, tokens], dim=1)
            mask = torch.cat([mask, torch.ones(tokens.shape[:2], dtype=mask.dtype, device=mask.device)], dim=1)
        return EncodedScene(prefix, mask, state, estimate, carried, slots)

    def recorded_token_positions(self, positions: Tensor, sample_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The object tokens' training input: the recorded table x/y (decimetres) plus Gaussian noise of
        object_tokens_recorded_noise_m, so the action expert learns to follow the tokens from the first step of
        training and to tolerate the readout's error; samples with mask 0 keep the estimate."""
        recorded = positions.reshape(positions.shape[0], -1, 3)[..., :2].float() * OBJECT_POSITION_SCALE
        noise = torch.randn_like(recorded) * (self.config.object_tokens_recorded_noise_m * OBJECT_POSITION_SCALE)
        return recorded + noise, sample_mask

    def velocity(
        self,
        x_t: Tensor,
        time: Tensor,
        step_size: Tensor,
        cache: PrefixCache,
        valid_steps: Tensor | None = None,
        prefix_steps: Tensor | None = None,
    ) -> Tensor:
        output = self.expert(x_t, time, step_size, cache, valid_steps, prefix_steps)
        if self.config.parametrization == "velocity":
            return output
        return (x_t - output) / time[:, None, None]

    # ----- training -------------------------------------------------------------------------------------------
    def sample_time(self, batch_size: int, device: torch.device) -> Tensor:
        beta = torch.distributions.Beta(
            torch.tensor(self.config.time_sampling_beta_alpha), torch.tensor(self.config.time_sampling_beta_beta)
        )
        time = beta.sample((batch_size,)).to(device)
        return time * self.config.time_sampling_scale + self.config.time_sampling_offset

    def shortcut_targets(
        self,
        actions: Tensor,
        noise: Tensor,
        cache: PrefixCache,
        valid_steps: Tensor,
        count: int,
        prefix_steps: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Self-consistency targets for `count` samples: one jump of size d must equal two jumps of d/2.

        Step sizes are 1, 1/2, ..., 1/max_shortcut_steps; times lie on the matching grid so a jump never
        passes t = 0. The two half-steps come from the current network without gradient, with the smallest
        half-step using the instantaneous velocity (d = 0) that plain flow matching trains.
        """
        device = actions.device
        max_steps = self.config.max_shortcut_steps
        levels = int(max_steps).bit_length()  # d = 2^-k for k in 0..log2(max_steps)
        exponent = torch.randint(0, levels, (count,), device=device)
        step = 0.5 ** exponent.float()
        n_slots = (1.0 / step).long()
        time = step * (torch.floor(torch.rand(count, device=device) * n_slots.float()) + 1.0)
        x_t = time[:, None, None] * noise + (1 - time[:, None, None]) * actions
        if prefix_steps is not None:  # training-time RTC: the given steps stay clean through both half-steps
            x_t = torch.where(prefix_steps[:, :, None], actions, x_t)
        half = step / 2
        half_cond = torch.where(half < 1.0 / max_steps, torch.zeros_like(half), half)
        with torch.no_grad():
            cache = detach_cache(cache)
            v1 = self.velocity(x_t, time, half_cond, cache, valid_steps, prefix_steps)
            x_mid = x_t - half[:, None, None] * v1
            if prefix_steps is not None:
                x_mid = torch.where(prefix_steps[:, :, None], actions, x_mid)
            v2 = self.velocity(x_mid, time - half, half_cond, cache, valid_steps, prefix_steps)
        return x_t, time, step, (v1 + v2) / 2

    def loss(
        self,
        batch: dict[str, Tensor],
        actions: Tensor,
        loss_mask: Tensor,
        noise: Tensor | None = None,
        time: Tensor | None = None,
        prefix_delay: Tensor | None = None,
        future: tuple[Tensor, Tensor] | None = None,
        objects: tuple[Tensor, Tensor] | None = None,
        token_objects: Tensor | None = None,
        readout_objects: Tensor | None = None,
        named_objects: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """Masked flow-matching (+ shortcut) loss; actions padded to max_action_dim, mask (B, T, max_action_dim).

        Training-time RTC (config.rtc_training_max_delay > 0, or an explicit `prefix_delay` (B,) of ints): the
        first prefix_delay[b] steps of sample b are given as clean actions and excluded from the loss.
        `future`: (actions, mask) at config.future_action_offsets, for the far-future auxiliary.
        `objects`: (positions (B, objects * 3) in metres, per-sample mask (B,)), for the object auxiliary;
        `token_objects`: the positions the object tokens carry instead of `objects`' (same layout), if given;
        `readout_objects`: (B, objects), 1 where the object readout learns that sample's object (default: all);
        `named_objects`: the same objects by name (B, objects * 3), which object_readout_source="appearance" needs."""
        token_positions = None
        if objects is not None and self.object_tokens is not None and self.config.object_tokens_recorded_noise_m >= 0:
            positions, sample_mask = objects
            token_positions = self.recorded_token_positions(
                positions if token_objects is None else token_objects, sample_mask)
        scene = self.encode_scene(batch, with_estimate=objects is not None, token_positions=token_positions)
        prefix, prefix_mask = scene.prefix, scene.mask
        cache = self.cache_scene(prefix, prefix_mask, scene.state, scene.carried)
        batch_size = actions.shape[0]
        valid_steps = loss_mask.amax(dim=-1) > 0
        if noise is None:
            noise = torch.randn_like(actions)
        if time is None:
            time = self.sample_time(batch_size, actions.device)
        if prefix_delay is None and self.training and self.config.rtc_training_max_delay > 0:
            prefix_delay = sample_training_delays(batch_size, self.config.rtc_training_max_delay, actions.device)
        given = None if prefix_delay is None else prefix_steps(prefix_delay.to(actions.device), actions.shape[1])
        x_t = time[:, None, None] * noise + (1 - time[:, None, None]) * actions
        if given is not None:
            x_t = torch.where(given[:, :, None], actions, x_t)
            loss_mask = loss_mask * (~given)[:, :, None].to(loss_mask.dtype)
        target = noise - actions
        step_size = torch.zeros_like(time)
        n_shortcut = int(batch_size * self.config.shortcut_fraction) if self.training else 0
        if n_shortcut > 0:
            sc = slice(0, n_shortcut)
            sc_x, sc_time, sc_step, sc_target = self.shortcut_targets(
                actions[sc], noise[sc], select_cache(cache, sc), valid_steps[sc], n_shortcut,
                None if given is None else given[sc],
            )
            x_t = torch.cat([sc_x, x_t[n_shortcut:]])
            time = torch.cat([sc_time, time[n_shortcut:]])
            step_size = torch.cat([sc_step, step_size[n_shortcut:]])
            target = torch.cat([sc_target, target[n_shortcut:]])
        output = self.expert(x_t, time, step_size, cache, valid_steps, given).float()
        if self.config.parametrization == "velocity":
            squared_error = (output - target.float()) ** 2 * loss_mask
        else:
            # t²·‖v − target‖² with v = (x_t − â)/t, written without the division.
            clean_target = x_t - time[:, None, None] * target
            squared_error = (output - clean_target.float()) ** 2 * loss_mask
        per_sample = squared_error.sum(dim=(1, 2))
        loss = per_sample.sum() / loss_mask.sum().clamp(min=1.0)
        info = {}
        if n_shortcut > 0:
            info["shortcut_loss"] = (per_sample[:n_shortcut].sum() / loss_mask[:n_shortcut].sum().clamp(min=1)).item()
            info["flow_loss"] = (per_sample[n_shortcut:].sum() / loss_mask[n_shortcut:].sum().clamp(min=1)).item()
        if future is not None and self.future_readout is not None:
            future_actions, future_mask = future
            future_loss = masked_mean_squared_error(self.future_readout(prefix, prefix_mask), future_actions, future_mask)
            info["future_loss"] = future_loss.item()
            loss = loss + self.config.future_action_loss_weight * future_loss
        if objects is not None and self.object_readout is not None:
            positions, sample_mask = objects
            predicted = scene.estimate
            # Table x, y in decimetres (the workspace is a few across, so about unit scale); heights say little.
            target = positions.reshape(positions.shape[0], -1, 3)[..., :2] * OBJECT_POSITION_SCALE
            mask = sample_mask[:, None, None].float()
            if readout_objects is not None:
                mask = mask * readout_objects[:, :, None].float()
            mask = mask.expand_as(predicted)
            object_loss = masked_mean_squared_error(predicted, target, mask)
            info["object_position_loss"] = object_loss.item()
            if scene.slots is not None:
                if named_objects is None:
                    raise KeyError(
                        "object_readout_source='appearance' learns each object by name from "
                        f"'{self.config.object_named_positions_key}', which this dataset does not have: record it "
                        "again with `lerobot-vla record --virtual so101`, or use "
                        "--policy.object_readout_source=keypoints.")
                named = named_objects.reshape(named_objects.shape[0], -1, 3)[..., :2] * OBJECT_POSITION_SCALE
                slot_loss = slot_readout_loss(scene.slots, named, target, mask[..., 0])
                info["object_slot_loss"] = slot_loss.item()
                object_loss = object_loss + slot_loss
            loss = loss + self.config.object_position_loss_weight * object_loss
        info["loss"] = loss.item()
        return loss, info

    # ----- sampling -------------------------------------------------------------------------------------------
    def step_size_condition(self, num_steps: int) -> float:
        """Use the shortcut jump the network was trained for, or the instantaneous velocity otherwise."""
        is_power_of_two = num_steps & (num_steps - 1) == 0
        return 1.0 / num_steps if is_power_of_two and num_steps <= self.config.max_shortcut_steps else 0.0

    def sample(
        self,
        cache: PrefixCache,
        noise: Tensor,
        num_steps: int,
        rtc_processor: RTCGuidance | None = None,
        inference_delay: int | None = None,
        prev_chunk_left_over: Tensor | None = None,
        execution_horizon: int | None = None,
    ) -> Tensor:
        """Euler integration from t = 1 (noise) to t = 0 (data); `noise` is (batch, chunk, max_action_dim).

        With `prev_chunk_left_over` (real-time chunking, see rtc.py): a model trained with prefix conditioning
        (config.rtc_training_max_delay > 0) gets the leftover's first min(inference_delay, that maximum) actions
        as clean inputs at every step and returns them unchanged; any other model is guided by `rtc_processor`.
        """
        batch_size, chunk, dims = noise.shape
        dt = 1.0 / num_steps
        step_size = torch.full((batch_size,), self.step_size_condition(num_steps), device=noise.device)
        delay = int(inference_delay or 0)
        given = target = weights = None
        if prev_chunk_left_over is not None:
            leftover = prev_chunk_left_over.to(device=noise.device, dtype=noise.dtype)
            if leftover.ndim == 3 and leftover.shape[0] == 1 and batch_size > 1:
                leftover = leftover.expand(batch_size, -1, -1)
            if self.config.rtc_training_max_delay > 0:
                delay = min(delay, self.config.rtc_training_max_delay, leftover.shape[-2])
                if delay > 0:
                    target, _ = pad_leftover(leftover, chunk, dims)
                    given = prefix_steps(torch.full((batch_size,), delay, device=noise.device), chunk)
            elif rtc_processor is not None:
                target, weights = rtc_processor.target_and_weights(leftover, delay, chunk, dims, execution_horizon)
        x = noise if given is None else torch.where(given[:, :, None], target, noise)
        for index in range(num_steps):
            time_value = 1.0 - index * dt
            time = torch.full((batch_size,), time_value, device=noise.device)

            def velocity(x_t: Tensor, time=time) -> Tensor:
                return self.velocity(x_t, time, step_size, cache, prefix_steps=given)

            if weights is not None:
                final_dt = dt if index == num_steps - 1 else None
                v = rtc_processor.guided_velocity(x, time_value, velocity, target, weights, final_dt)
            else:
                v = velocity(x)
            x = x - dt * v
            if given is not None:
                x = torch.where(given[:, :, None], target, x)
        return x


def augment_images(images: Tensor, shift_px: int, color_jitter: float) -> Tensor:
    """Random translation (replicate padding, as in DrQ) and brightness/contrast jitter, per sample."""
    batch, _, height, width = images.shape
    if shift_px > 0:
        padded = F.pad(images, (shift_px,) * 4, mode="replicate")
        offsets = torch.randint(0, 2 * shift_px + 1, (batch, 2), device=images.device).tolist()
        images = torch.stack(
            [padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)]
        )
    if color_jitter > 0:
        contrast = 1 + (torch.rand(batch, 1, 1, 1, device=images.device) * 2 - 1) * color_jitter
        brightness = (torch.rand(batch, 1, 1, 1, device=images.device) * 2 - 1) * color_jitter
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        images = ((images - mean) * contrast + mean + brightness).clamp(0.0, 1.0)
    return images


class FlowVLAPolicy(PreTrainedPolicy):
    """LeRobot policy wrapper: training loss, action queue (0.4.4) and chunk prediction with RTC (0.6)."""

    config_class = FlowVLAConfig
    name = "flow_vla"

    def __init__(self, config: FlowVLAConfig, dataset_stats: dict | None = None, **kwargs):
        super().__init__(config)
        config.validate_features()
        self.config = config
        self.model = FlowVLAModel(config, None if dataset_stats is None else dataset_stats.get(ACTION))
        self.rtc_processor = None
        self.reset()

    def reset(self) -> None:
        """Drop queued actions and the held object estimate; call at episode start."""
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)
        self.held_object_positions: Tensor | None = None

    def hold_object_positions(self, positions: Tensor | None) -> None:
        """What the object tokens carry until the next reset, (B, objects, 2) table x/y in decimetres, with
        object_tokens_at_run_time="first"; None estimates them again from the next chunk's observation."""
        self.held_object_positions = positions

    def _encode_for_acting(self, batch: dict[str, Tensor], may_hold: bool) -> PrefixCache:
        """The prefix cache to act from: with object_tokens_at_run_time="first" the object tokens carry the held
        estimate, which the first call with `may_hold` takes from its observation."""
        holds = self.config.object_tokens_at_run_time == "first"  # the config ensures object tokens then
        held = self.held_object_positions if holds else None
        token_positions = None if held is None else (held, torch.ones(held.shape[0], device=held.device))
        scene = self.model.encode_scene(batch, token_positions=token_positions)
        if holds and held is None and may_hold:
            self.held_object_positions = scene.estimate
        return self.model.cache_scene(scene.prefix, scene.mask, scene.state, scene.carried)

    def get_optim_params(self) -> list[nn.Parameter] | list[dict]:
        """The trainable parameters; as two groups when the object readout learns at object_readout_lr_scale
        times the rate of the rest."""
        readout = self.model.object_readout
        if readout is None or self.config.object_readout_lr_scale == 1.0:
            return [param for param in self.parameters() if param.requires_grad]
        in_readout = {id(param) for param in readout.parameters()}
        rest = [param for param in self.parameters() if param.requires_grad and id(param) not in in_readout]
        return [{"params": rest}, {"params": [param for param in readout.parameters() if param.requires_grad],
                                   "lr": self.config.optimizer_lr * self.config.object_readout_lr_scale}]

    @staticmethod
    def supports_rtc() -> bool:
        return True

    @property
    def action_dim(self) -> int:
        return self.config.action_feature.shape[0]

    def loss_mask(self, batch: dict[str, Tensor], actions: Tensor) -> Tensor:
        """1 for real (step, dimension) pairs: steps past the episode end and padded dims are excluded."""
        batch_size, steps, _ = actions.shape
        step_mask = torch.ones(batch_size, steps, device=actions.device)
        if "action_is_pad" in batch:
            step_mask = (~batch["action_is_pad"].bool()).float()
        dim_mask = (torch.arange(self.config.max_action_dim, device=actions.device) < self.action_dim).float()
        return step_mask[:, :, None] * dim_mask[None, None, :]

    def forward(
        self, batch: dict[str, Tensor], noise: Tensor | None = None, time: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        actions = batch[ACTION]
        if actions.ndim == 2:
            actions = actions[:, None, :]
        actions = pad_last_dim(actions.float(), self.config.max_action_dim)
        loss_mask = self.loss_mask(batch, actions)
        future = None
        if actions.shape[1] > self.config.chunk_size:  # the far-future steps of future_action_offsets follow
            chunk = self.config.chunk_size
            future = (actions[:, chunk:], loss_mask[:, chunk:].clone())
            actions, loss_mask = actions[:, :chunk], loss_mask[:, :chunk]
        objects, token_objects, readout_objects, named_objects = None, None, None, None
        positions = batch.get(self.config.object_positions_key)
        if self.model.object_readout is not None and positions is not None:  # a dataset of the virtual arm
            positions = positions[:, -1] if positions.ndim == 3 else positions
            objects = (positions, torch.ones(positions.shape[0], device=positions.device))
            token_objects = self.recorded_start_positions(batch)
            readout_objects = self.resting_objects(batch, positions)
            named_objects = batch.get(self.config.object_named_positions_key)
            if named_objects is not None and named_objects.ndim == 3:
                named_objects = named_objects[:, -1]
        n_outliers = int(actions.shape[0] * self.config.outlier_exposure_fraction) if self.training else 0
        if n_outliers > 0:
            # The last n_outliers samples: corrupted observation, actions of random other samples.
            source = torch.randint(0, actions.shape[0] - n_outliers, (n_outliers,), device=actions.device)
            # With state_residual a displaced state would pass straight into the predicted chunk (2-4 standard
            # deviations off, which the expert cannot learn to cancel): only the cameras are corrupted then.
            batch = corrupt_observations(batch, n_outliers, displace_state=not self.config.state_residual)
            actions = torch.cat([actions[:-n_outliers], actions[source]])
            loss_mask = torch.cat([loss_mask[:-n_outliers], loss_mask[source]])
            if future is not None:  # a corrupted observation says nothing about the far future either
                future[1][-n_outliers:] = 0.0
            if objects is not None:  # nor about where the objects are
                objects[1][-n_outliers:] = 0.0
        return self.model.loss(batch, actions, loss_mask, noise=noise, time=time, future=future, objects=objects,
                               token_objects=token_objects, readout_objects=readout_objects,
                               named_objects=named_objects)

    def resting_objects(self, batch: dict[str, Tensor], positions: Tensor) -> Tensor | None:
        """(B, objects), 1 for each object no higher than object_readout_max_lift_m above its height at the
        episode start: the ones the object readout learns from. None (all) without the start positions."""
        start = batch.get(self.config.object_start_positions_key)
        if start is None or self.config.object_readout_max_lift_m < 0:
            return None
        start = start[:, -1] if start.ndim == 3 else start
        lift = positions.reshape(positions.shape[0], -1, 3)[..., 2] - start.reshape(start.shape[0], -1, 3)[..., 2]
        return (lift <= self.config.object_readout_max_lift_m).to(positions.dtype)

    def recorded_start_positions(self, batch: dict[str, Tensor]) -> Tensor | None:
        """The objects at the episode's first frame, for object_tokens_recorded_from="episode_start"; else None."""
        if self.config.object_tokens_recorded_from != "episode_start" or self.model.object_tokens is None:
            return None
        key = self.config.object_start_positions_key
        if key not in batch:
            raise KeyError(
                f"object_tokens_recorded_from='episode_start' trains the object tokens on '{key}', which this "
                "dataset does not have: record it again with `lerobot-vla record --virtual so101` (it records "
                "both), or set --policy.object_tokens_recorded_from=frame.")
        start = batch[key]
        return start[:, -1] if start.ndim == 3 else start

    def _noise(self, batch_size: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
        shape = (batch_size, self.config.chunk_size, self.config.max_action_dim)
        return torch.randn(shape, device=device, generator=generator)

    @torch.no_grad()
    def predict_action_chunk(
        self,
        batch: dict[str, Tensor],
        inference_delay: int | None = None,
        prev_chunk_left_over: Tensor | None = None,
        noise: Tensor | None = None,
        num_steps: int | None = None,
        execution_horizon: int | None = None,
        **kwargs,
    ) -> Tensor:
        """Normalised action chunk (batch, chunk_size, action_dim).

        With `prev_chunk_left_over` (the unexecuted, normalised rest of the previous chunk) and
        `inference_delay` (actions that will run before this chunk is ready), the first actions are
        guided to continue the previous chunk (real-time chunking, rtc.py): by inference-time guidance, or
        for a model trained with `rtc_training_max_delay > 0` by feeding them as given clean actions.
        `execution_horizon` overrides config.rtc_execution_horizon. With config.inference_draws > 1 the chunk is
        the average of that many draws (`noise`, if given, then holds batch x draws noises).
        """
        self.eval()
        cache = self._encode_for_acting(batch, may_hold=True)
        batch_size = cache[1].shape[0]
        device = cache[1].device
        draws = self.config.inference_draws
        if noise is None:
            noise = self._noise(batch_size * draws, device)
        if noise.shape[0] != batch_size * draws:
            raise ValueError(f"noise holds {noise.shape[0]} chunks; {batch_size} observations x inference_draws "
                             f"{draws} need {batch_size * draws}")
        rtc_processor = None
        if prev_chunk_left_over is not None:
            rtc_processor = self.init_rtc_processor()
            prev_chunk_left_over = prev_chunk_left_over.to(device=device, dtype=noise.dtype)
            if draws > 1 and prev_chunk_left_over.ndim == 3 and prev_chunk_left_over.shape[0] == batch_size:
                prev_chunk_left_over = prev_chunk_left_over.repeat_interleave(draws, 0)
        if draws > 1:
            cache = repeat_cache(cache, draws)
        actions = self.model.sample(
            cache,
            noise,
            num_steps or self.config.num_inference_steps,
            rtc_processor=rtc_processor,
            inference_delay=inference_delay,
            prev_chunk_left_over=prev_chunk_left_over,
            execution_horizon=execution_horizon,
        )
        if draws > 1:
            actions = actions.view(batch_size, draws, *actions.shape[1:]).mean(dim=1)
        return actions[:, :, : self.action_dim]

    def init_rtc_processor(self) -> RTCGuidance:
        """The inference-time guidance the config asks for, under the name LeRobot's RTC callers use after setting
        `config.rtc_config` (LeRobot 0.6's rollout, 0.4.4's RTC example); also rebuilt on every guided chunk, so a
        config edit takes effect without it."""
        self.rtc_processor = rtc_guidance_from_config(self.config)
        return self.rtc_processor

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], noise: Tensor | None = None, **kwargs) -> Tensor:
        """One action per call; a new chunk is computed only when the queue of n_action_steps is empty."""
        self.eval()
        if not self._action_queue:
            chunk = self.predict_action_chunk(batch, noise=noise)
            self._action_queue.extend(chunk.transpose(0, 1)[: self.config.n_action_steps])
        return self._action_queue.popleft()

    # ----- uncertainty ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_action_chunks(
        self,
        batch: dict[str, Tensor],
        num_samples: int | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """(batch, num_samples, chunk, action_dim) normalised chunks from independent noise, in one pass:
        the prefix is encoded once and its keys/values repeated."""
        self.eval()
        samples = num_samples or self.config.uncertainty_num_samples
        cache = self._encode_for_acting(batch, may_hold=False)
        batch_size = cache[1].shape[0]
        noise = self._noise(batch_size * samples, cache[1].device, generator)
        chunks = self.model.sample(repeat_cache(cache, samples), noise, num_steps or self.config.uncertainty_num_steps)
        return chunks[:, :, : self.action_dim].view(batch_size, samples, self.config.chunk_size, self.action_dim)

    @torch.no_grad()
    def action_uncertainty(
        self,
        batch: dict[str, Tensor],
        num_samples: int | None = None,
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Score per observation (batch,): mean standard deviation across sampled chunks, in normalised
        action units. A trained policy maps all noise to nearly the same chunk where it has seen data;
        the samples spread out where it has not."""
        chunks = self.sample_action_chunks(batch, num_samples, num_steps, generator)
        return chunks.std(dim=1).mean(dim=(1, 2))

    def is_uncertain(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> Tensor:
        """(batch,) bool: True where the score exceeds the calibrated threshold — hand control to a human.
        A score that is not a number (NaN/inf from a broken observation) counts as uncertain: comparing it
        with the threshold would be False and never hand over."""
        threshold = self.config.uncertainty_threshold
        if threshold is None or not math.isfinite(threshold):
            raise ValueError(
                "uncertainty_threshold is not calibrated. Run "
                "lerobot_vla_plugin.policies.flow_vla.uncertainty.calibrate_uncertainty_threshold on held-out "
                "episodes and save the policy again."
            )
        score = self.action_uncertainty(batch, generator=generator)
        return ~torch.isfinite(score) | (score > threshold)
