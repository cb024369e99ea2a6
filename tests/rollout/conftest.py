"""Tiny real policies for the rollout tests: a ramp that starts where the arm is, and ways to make it slow, hang
or emit NaN. They run through the same LoadedPolicy (processors, frame building) as a checkpoint does."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")

import threading
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from lerobot_vla_plugin.rollout.loaded_policy import LoadedPolicy

torch.set_num_threads(1)

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
NAMES = [f"{joint}.pos" for joint in JOINTS]
STEP = 0.5  # robot units per tick along the ramp


class RampPolicy(nn.Module):
    """Chunk j of an observation with state s is s + (j + 1) * step on every joint (plus a learnable offset that
    starts at zero). `gate`: inference waits until it is set (a slow or hung policy); `nan_from_chunk`: chunks
    from that call on contain NaN; `n_action_steps`: the config's, as LeRobot policies have it (absent: None)."""

    def __init__(self, chunk_size: int = 8, rtc: bool = False, gate: threading.Event | None = None,
                 nan_from_chunk: int | None = None, n_action_steps: int | None = None):
        super().__init__()
        self.config = SimpleNamespace(device="cpu", use_amp=False, chunk_size=chunk_size)
        if n_action_steps is not None:
            self.config.n_action_steps = n_action_steps
        self.offset = nn.Parameter(torch.zeros(len(NAMES)))
        self.rtc = rtc
        self.gate = gate
        self.nan_from_chunk = nan_from_chunk
        self.calls: list[dict] = []

    def supports_rtc(self) -> bool:
        return self.rtc

    def reset(self) -> None:
        pass

    def predict_action_chunk(self, batch, inference_delay=None, prev_chunk_left_over=None):
        self.calls.append({"inference_delay": inference_delay, "leftover": prev_chunk_left_over,
                           "state": batch["observation.state"][0, 0].item()})
        if self.gate is not None:
            self.gate.wait(60)
        state = batch["observation.state"].float()
        steps = torch.arange(1, self.config.chunk_size + 1, dtype=torch.float32)[None, :, None]
        chunk = state[:, None, :] + STEP * steps + self.offset
        if self.nan_from_chunk is not None and len(self.calls) > self.nan_from_chunk:
            chunk[:, -1, 0] = float("nan")
        return chunk


def features() -> dict:
    vector = {"dtype": "float32", "shape": (len(NAMES),), "names": NAMES}
    return {"action": dict(vector), "observation.state": dict(vector)}


def loaded(policy: nn.Module, robot_features: dict | None = None) -> LoadedPolicy:
    from lerobot.processor import DeviceProcessorStep, PolicyProcessorPipeline
    from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action

    preprocessor = PolicyProcessorPipeline(steps=[DeviceProcessorStep(device="cpu")])
    postprocessor = PolicyProcessorPipeline(steps=[DeviceProcessorStep(device="cpu")],
                                            to_transition=policy_action_to_transition,
                                            to_output=transition_to_policy_action)
    return LoadedPolicy(policy, preprocessor, postprocessor, robot_features or features(), "test_arm")


def observation(values) -> dict:
    return {name: float(value) for name, value in zip(NAMES, np.broadcast_to(values, (len(NAMES),)))}
