"""Real-time chunking (RTC) for `flow_vla`: the new chunk continues the unexecuted rest of the previous one.

While a chunk is computed the arm keeps executing the previous chunk for `inference_delay` ticks, so the new
chunk's first `inference_delay` actions are already decided: they are the previous chunk's leftover. Two ways to
make the new chunk agree with it:

- Inference-time guidance (Black, Galliker, Levine 2025, "Real-Time Execution of Action Chunking Flow Policies"):
  at every Euler step, the denoised estimate x̂ of the clean chunk is pulled towards the leftover with soft
  prefix weights W (1 on the first `inference_delay` actions, decaying to 0 at `execution_horizon`). The
  correction is the vector-Jacobian product (leftover − x̂)ᵀ·W·∂x̂/∂x_t, taken with autograd ("vjp"), or with
  that Jacobian taken as the identity ("identity", the default: measured closer at 1-4 steps, where the
  network's Jacobian near the noise end is small), scaled by a time-dependent weight capped at
  `max_guidance_weight`. Works with any trained checkpoint.
- Training-time prefix conditioning (`rtc_training_max_delay > 0`): the model is trained with the first d actions
  of the target given as clean inputs (flagged by a learned embedding, excluded from the loss) and at inference
  the leftover is fed the same way.

Time convention of flow_vla (pi0/SmolVLA): t = 1 is noise, t = 0 is data, x_t = t·noise + (1 − t)·actions,
the velocity is v = noise − actions and an Euler step is x ← x − dt·v. The denoised estimate is therefore
x̂ = x_t − t·v_t (the paper's τ is 1 − t), and a guided velocity v − w·correction moves x towards the leftover.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

PREFIX_SCHEDULES = ("linear", "exp", "ones", "zeros")
JACOBIANS = ("vjp", "identity")


def prefix_weights(
    inference_delay: int, execution_horizon: int, chunk_size: int, schedule: str = "linear"
) -> Tensor:
    """(chunk_size,) soft mask: 1 for steps < inference_delay, then decaying to 0 at execution_horizon.

    "linear": (H − i) / (H − d + 1) for d <= i < H; "exp": that value c times (e^c − 1)/(e − 1) (the paper's
    exponential decay); "ones": 1 up to the horizon; "zeros": hard mask, 1 only on the delayed steps.
    A horizon shorter than the delay is raised to it: the delayed steps are always fully weighted.
    """
    if schedule not in PREFIX_SCHEDULES:
        raise ValueError(f"RTC prefix schedule must be one of {PREFIX_SCHEDULES}, got '{schedule}'.")
    delay = max(0, min(int(inference_delay), chunk_size))
    horizon = max(delay, min(int(execution_horizon), chunk_size))
    steps = torch.arange(chunk_size, dtype=torch.float32)
    decay = ((horizon - steps) / (horizon - delay + 1)).clamp(min=0.0)
    if schedule == "linear":
        weights = decay
    elif schedule == "exp":
        weights = decay * torch.expm1(decay) / (math.e - 1)
    elif schedule == "ones":
        weights = (steps < horizon).float()
    else:
        weights = torch.zeros(chunk_size)
    weights = torch.where(steps < delay, torch.ones_like(weights), weights)
    return torch.where(steps < horizon, weights, torch.zeros_like(weights))


def pad_leftover(leftover: Tensor, chunk_size: int, action_dim: int) -> tuple[Tensor, Tensor]:
    """Zero-pad a (batch, steps, dims) or (steps, dims) leftover to (batch, chunk_size, action_dim).

    Returns the padded leftover and a (batch, chunk_size, action_dim) mask that is 1 only where the leftover
    has a value, so the padding is never a target. Steps beyond chunk_size are cut."""
    if leftover.ndim == 2:
        leftover = leftover[None]
    if leftover.ndim != 3:
        raise ValueError(f"prev_chunk_left_over must be (batch, steps, dims), got shape {tuple(leftover.shape)}")
    batch, steps, dims = leftover.shape
    if dims > action_dim:
        raise ValueError(f"prev_chunk_left_over has {dims} dimensions, more than the policy's {action_dim}")
    steps = min(steps, chunk_size)
    padded = leftover.new_zeros(batch, chunk_size, action_dim)
    mask = leftover.new_zeros(batch, chunk_size, action_dim)
    padded[:, :steps, :dims] = leftover[:, :steps]
    mask[:, :steps, :dims] = 1.0
    return padded, mask


def guidance_weight(time: float, max_guidance_weight: float) -> float:
    """The paper's min(β, (1 − τ)/τ · r⁻²) with r² = (1 − τ)² / ((1 − τ)² + τ²), written in flow_vla's t = 1 − τ:
    β at the first step (t = 1, pure noise), decreasing towards the data end."""
    tau = 1.0 - float(time)
    if tau <= 0.0:
        return float(max_guidance_weight)
    if tau >= 1.0:
        return 0.0
    inv_r2 = ((1 - tau) ** 2 + tau**2) / (1 - tau) ** 2
    return float(min((1 - tau) / tau * inv_r2, max_guidance_weight))


@dataclass
class RTCGuidance:
    """Inference-time RTC guidance for one chunk: leftover and weights prepared once, applied at every step."""

    execution_horizon: int = 10
    max_guidance_weight: float = 10.0
    prefix_schedule: str = "linear"
    # "vjp": the exact vector-Jacobian product through the network; "identity": ∂x̂/∂x_t taken as the identity,
    # so the correction is the weighted error itself (what LeRobot 0.4.4's RTCProcessor ends up computing,
    # as it evaluates the velocity before x_t requires a gradient).
    jacobian: str = "identity"

    def __post_init__(self):
        if self.jacobian not in JACOBIANS:
            raise ValueError(f"rtc_guidance_jacobian must be one of {JACOBIANS}, got '{self.jacobian}'.")
        if self.prefix_schedule not in PREFIX_SCHEDULES:
            raise ValueError(f"rtc_prefix_schedule must be one of {PREFIX_SCHEDULES}, got '{self.prefix_schedule}'.")
        if self.execution_horizon < 1:
            raise ValueError(f"rtc_execution_horizon must be >= 1, got {self.execution_horizon}.")
        if self.max_guidance_weight < 0:
            raise ValueError(f"rtc_max_guidance_weight must be >= 0, got {self.max_guidance_weight}.")

    def target_and_weights(
        self, leftover: Tensor, inference_delay: int, chunk_size: int, action_dim: int,
        execution_horizon: int | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Padded leftover (batch, chunk, dims) and its weights, zero wherever the leftover has no value (a
        leftover shorter than the horizon limits the horizon, as nothing is there to continue)."""
        target, valid = pad_leftover(leftover, chunk_size, action_dim)
        horizon = self.execution_horizon if execution_horizon is None else execution_horizon
        weights = prefix_weights(inference_delay, horizon, chunk_size, self.prefix_schedule)
        weights = weights.to(device=target.device, dtype=target.dtype)[None, :, None] * valid
        return target, weights

    def guided_velocity(
        self,
        x_t: Tensor,
        time: float,
        velocity: Callable[[Tensor], Tensor],
        target: Tensor,
        weights: Tensor,
        final_dt: float | None = None,
    ) -> Tensor:
        """v(x_t) − w·(target − x̂)ᵀ·W·∂x̂/∂x_t with x̂ = x_t − t·v(x_t), by one backward pass (works under no_grad).

        `final_dt`: the size of this step when it is the last one (it ends at the data); w is then also capped
        at 1/final_dt, so the last step moves the estimate at most onto the leftover (with an identity Jacobian
        exactly onto it where W = 1). Without that cap a single step (dt = 1, w = max_guidance_weight)
        overshoots the leftover by (w − 1) times the error; earlier steps may overshoot, later ones re-denoise."""
        if self.jacobian == "identity":
            v = velocity(x_t)
            correction = (target - (x_t - time * v)) * weights
        else:
            with torch.enable_grad():
                x = x_t.detach().requires_grad_(True)
                v = velocity(x)
                denoised = x - time * v
                error = (target - denoised) * weights
                (correction,) = torch.autograd.grad(denoised, x, grad_outputs=error.detach())
        weight = guidance_weight(time, self.max_guidance_weight)
        if final_dt is not None and final_dt > 0:
            weight = min(weight, 1.0 / final_dt)
        return (v - weight * correction).detach()


def rtc_guidance_from_config(config) -> RTCGuidance:
    """The guidance a FlowVLAConfig asks for. A legacy `rtc_config` (LeRobot's RTCConfig, saved by older
    checkpoints) still wins when set, so those checkpoints keep the guidance they were saved with."""
    legacy = getattr(config, "rtc_config", None)
    if legacy is not None:
        schedule = getattr(legacy.prefix_attention_schedule, "value", legacy.prefix_attention_schedule)
        return RTCGuidance(int(legacy.execution_horizon), float(legacy.max_guidance_weight), str(schedule).lower(),
                           config.rtc_guidance_jacobian)
    return RTCGuidance(config.rtc_execution_horizon, config.rtc_max_guidance_weight, config.rtc_prefix_schedule,
                       config.rtc_guidance_jacobian)


def prefix_steps(delay: Tensor, chunk_size: int) -> Tensor:
    """(batch, chunk) bool: True on the first delay[b] steps of sample b (the given, clean actions)."""
    return torch.arange(chunk_size, device=delay.device)[None, :] < delay[:, None]


def sample_training_delays(batch_size: int, max_delay: int, device: torch.device) -> Tensor:
    """Delays for training-time prefix conditioning, uniform in [0, max_delay] (0: a chunk with no prefix)."""
    return torch.randint(0, max_delay + 1, (batch_size,), device=device)
