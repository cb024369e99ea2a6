"""Calibrating when `flow_vla` does not know: a threshold on the sample-spread score.

`FlowVLAPolicy.action_uncertainty` scores an observation by how much chunks drawn from different noise
disagree. This module picks the threshold from held-out episodes: their observations as they are
(in-distribution) and perturbed copies (occluded/noisy cameras, displaced state). The threshold is written
into the policy config, so `save_pretrained` keeps it with the checkpoint and a rollout can hand control to a
human when `policy.is_uncertain(batch)` is true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from lerobot.utils.constants import OBS_IMAGES, OBS_STATE
from torch import Tensor


@dataclass
class UncertaintyCalibration:
    threshold: float
    in_distribution_scores: list[float]
    perturbed_scores: list[float]
    auroc: float  # probability that a perturbed observation scores above an in-distribution one
    false_alarm_rate: float  # in-distribution observations above the threshold
    detection_rate: float  # perturbed observations above the threshold


def perturb_observation(
    batch: dict[str, Tensor],
    image_noise_std: float = 0.3,
    occlusion_fraction: float = 0.5,
    state_offset_std: float = 3.0,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """A copy of a *preprocessed* batch the policy should not trust: camera noise plus a grey block over
    part of each image, and the (normalised) state pushed `state_offset_std` standard deviations away."""
    perturbed = dict(batch)
    for key, value in batch.items():
        if _is_image(key, value):
            noise = torch.randn(value.shape, generator=generator, device="cpu").to(value.device)
            image = (value + image_noise_std * noise).clamp(0.0, 1.0)
            height = value.shape[-2]
            image[..., : int(height * occlusion_fraction), :] = 0.5
            perturbed[key] = image
    if OBS_STATE in batch:
        state = batch[OBS_STATE]
        direction = torch.randn(state.shape, generator=generator, device="cpu").to(state.device).sign()
        perturbed[OBS_STATE] = state + state_offset_std * direction
    return perturbed


def corrupt_observations(batch: dict[str, Tensor], count: int, displace_state: bool = True) -> dict[str, Tensor]:
    """Corrupt the last `count` samples of a preprocessed training batch with random severity: camera
    noise, a grey occluding block of random size, a displaced state (each at random, every sample at least one).
    Without `displace_state` the state is left as it is and every sample gets the camera corruption.

    Used for outlier exposure: paired with actions from *other* samples, they teach the flow that a
    corrupted observation carries no information about the action, so its chunks spread out.
    """
    if count <= 0:
        return batch
    corrupted = dict(batch)
    some_key = next(k for k, v in batch.items() if isinstance(v, Tensor))
    device = batch[some_key].device
    if displace_state:
        apply_image = torch.rand(count, device=device) < 0.7
        apply_state = (torch.rand(count, device=device) < 0.7) | ~apply_image
    else:
        apply_image = torch.ones(count, dtype=torch.bool, device=device)
    for key, value in batch.items():
        if not _is_image(key, value):
            continue
        tail = value[-count:].float()
        shape = (count,) + (1,) * (tail.ndim - 1)
        noisy = tail + torch.rand(shape, device=device) * 0.5 * torch.randn_like(tail)
        height, width = tail.shape[-2:]
        rows = torch.arange(height, device=device).view(1, -1, 1)
        cols = torch.arange(width, device=device).view(1, 1, -1)
        size = 0.3 + 0.4 * torch.rand(count, 2, device=device)
        top = (torch.rand(count, device=device) * (1 - size[:, 0]) * height).view(-1, 1, 1)
        left = (torch.rand(count, device=device) * (1 - size[:, 1]) * width).view(-1, 1, 1)
        block = (rows >= top) & (rows < top + size[:, 0].view(-1, 1, 1) * height)
        block = block & (cols >= left) & (cols < left + size[:, 1].view(-1, 1, 1) * width)
        block = block.view(count, *([1] * (tail.ndim - 3)), height, width)
        grey = torch.rand(shape, device=device)
        noisy = torch.where(block, grey, noisy).clamp(0.0, 1.0)
        keep = ~apply_image.view(shape)
        corrupted[key] = torch.cat([value[:-count], torch.where(keep, tail, noisy).to(value.dtype)])
    if OBS_STATE in batch and displace_state:
        state = batch[OBS_STATE]
        tail = state[-count:]
        offset = (2.0 + 2.0 * torch.rand(tail.shape, device=device)) * torch.randint_like(tail, 0, 2).mul(2).sub(1)
        mask = apply_state.view((count,) + (1,) * (tail.ndim - 1))
        corrupted[OBS_STATE] = torch.cat([state[:-count], torch.where(mask, tail + offset, tail)])
    return corrupted


def _is_image(key: str, value) -> bool:
    """Camera tensors only: LeRobot also puts `<camera>_is_pad` masks under the same prefix."""
    return key.startswith(OBS_IMAGES) and isinstance(value, Tensor) and value.is_floating_point() and value.ndim >= 4


def auroc(negatives: Tensor, positives: Tensor) -> float:
    """Area under the ROC curve via pairwise comparison (ties count half); fine for a few hundred scores."""
    greater = (positives[:, None] > negatives[None, :]).float().mean()
    ties = (positives[:, None] == negatives[None, :]).float().mean()
    return float(greater + 0.5 * ties)


def choose_threshold(in_distribution: Tensor, perturbed: Tensor, max_false_alarm_rate: float) -> float:
    """The threshold with the best balanced accuracy among those that raise at most `max_false_alarm_rate`
    false alarms on in-distribution data (a human called in for nothing is also a cost)."""
    candidates = torch.cat([in_distribution, perturbed]).unique()
    best_threshold, best_score = float(in_distribution.max()), -1.0
    for candidate in candidates:
        false_alarms = (in_distribution > candidate).float().mean().item()
        if false_alarms > max_false_alarm_rate:
            continue
        detection = (perturbed > candidate).float().mean().item()
        score = detection + (1.0 - false_alarms)
        if score > best_score:
            best_threshold, best_score = float(candidate), score
    return best_threshold


@torch.no_grad()
def calibrate_uncertainty_threshold(
    policy,
    held_out_batches: Iterable[dict[str, Tensor]],
    perturb: Callable[[dict[str, Tensor]], dict[str, Tensor]] = perturb_observation,
    max_false_alarm_rate: float = 0.05,
    seed: int = 0,
) -> UncertaintyCalibration:
    """Score held-out batches (already through the policy's preprocessor) and perturbed copies, choose the
    threshold and store it in `policy.config.uncertainty_threshold`."""
    generator = torch.Generator().manual_seed(seed)
    in_scores, out_scores = [], []
    for batch in held_out_batches:
        device = batch[next(k for k, v in batch.items() if isinstance(v, Tensor))].device
        sample_generator = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        in_scores.append(policy.action_uncertainty(batch, generator=sample_generator).cpu())
        out_scores.append(policy.action_uncertainty(perturb(batch), generator=sample_generator).cpu())
    if not in_scores:
        raise ValueError("No held-out batches were given; pass batches from episodes the policy was not trained on.")
    in_distribution, perturbed = torch.cat(in_scores), torch.cat(out_scores)
    if not torch.isfinite(in_distribution).all():
        raise ValueError(
            f"{int((~torch.isfinite(in_distribution)).sum())} of {len(in_distribution)} held-out observations "
            "score NaN/inf, so no threshold can be calibrated; check the held-out data and "
            "config.uncertainty_num_samples (>= 2)."
        )
    threshold = choose_threshold(in_distribution, perturbed, max_false_alarm_rate)
    policy.config.uncertainty_threshold = threshold
    return UncertaintyCalibration(
        threshold=threshold,
        in_distribution_scores=in_distribution.tolist(),
        perturbed_scores=perturbed.tolist(),
        auroc=auroc(in_distribution, perturbed),
        false_alarm_rate=float((in_distribution > threshold).float().mean()),
        detection_rate=float((perturbed > threshold).float().mean()),
    )


def held_out_batches(
    dataset, preprocessor, batch_size: int = 16, max_batches: int | None = None
) -> Iterator[dict[str, Tensor]]:
    """Preprocessed batches from a LeRobotDataset built on held-out episodes
    (`LeRobotDataset(repo_id, root=..., episodes=[...])`)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            return
        yield preprocessor(batch)
