"""Shared fixtures for the flow_vla tests: tiny configs, synthetic batches, a tiny LeRobot dataset on disk."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature

import lerobot_robot_vla_plugin  # noqa: F401  (registers flow_vla like LeRobot's plugin discovery does)
from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

# These models are tiny: one thread avoids the synchronisation overhead that dominates them (and is ~10x
# faster than two on a machine whose cores are busy with other work).
torch.set_num_threads(1)

STATE_DIM = 6
ACTION_DIM = 6
IMAGE_KEY = "observation.images.front"
IMAGE_SHAPE = (3, 32, 32)
CHUNK = 8

# Small enough that a training step takes milliseconds on one CPU core.
TINY_POLICY_KWARGS = {
    "chunk_size": CHUNK,
    "n_action_steps": CHUNK,
    "image_size": (32, 32),
    "image_encoder_channels": (8, 16),
    "dim_model": 32,
    "n_heads": 2,
    "n_prefix_layers": 1,
    "expert_dim": 32,
    "expert_heads": 2,
    "n_expert_layers": 1,
    "dim_feedforward_multiplier": 2,
    "tokenizer_max_length": 24,
    "max_state_dim": 8,
    "max_action_dim": 8,
}

# The same sizes as lerobot-train command-line flags.
TINY_POLICY_FLAGS = [
    f"--policy.chunk_size={CHUNK}",
    f"--policy.n_action_steps={CHUNK}",
    "--policy.image_size=[32,32]",
    "--policy.image_encoder_channels=[8,16]",
    "--policy.dim_model=32",
    "--policy.n_heads=2",
    "--policy.n_prefix_layers=1",
    "--policy.expert_dim=32",
    "--policy.expert_heads=2",
    "--policy.n_expert_layers=1",
    "--policy.dim_feedforward_multiplier=2",
    "--policy.tokenizer_max_length=24",
    "--policy.max_state_dim=8",
    "--policy.max_action_dim=8",
]


def tiny_features(state_dim: int = STATE_DIM, action_dim: int = ACTION_DIM, cameras: int = 1):
    inputs = {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(state_dim,))}
    names = [IMAGE_KEY] + [f"observation.images.cam{i}" for i in range(1, cameras)]
    for name in names[:cameras]:
        inputs[name] = PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE_SHAPE)
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))}
    return inputs, outputs


def make_tiny_config(**overrides) -> FlowVLAConfig:
    cameras = overrides.pop("cameras", 1)
    state_dim = overrides.pop("state_dim", STATE_DIM)
    action_dim = overrides.pop("action_dim", ACTION_DIM)
    inputs, outputs = tiny_features(state_dim, action_dim, cameras)
    kwargs = {**TINY_POLICY_KWARGS, **overrides}
    return FlowVLAConfig(device="cpu", input_features=inputs, output_features=outputs, **kwargs)


def make_raw_batch(config: FlowVLAConfig, batch_size: int = 4, seed: int = 0, task: str = "pick up the cube"):
    """A batch as LeRobot's dataloader yields it (before the preprocessor)."""
    generator = torch.Generator().manual_seed(seed)
    steps = len(config.action_delta_indices)  # the chunk, then any far-future steps
    batch = {
        "observation.state": torch.randn(batch_size, config.robot_state_feature.shape[0], generator=generator),
        "action": torch.randn(batch_size, steps, config.action_feature.shape[0], generator=generator),
        "action_is_pad": torch.zeros(batch_size, steps, dtype=torch.bool),
        "task": [task] * batch_size,
    }
    for key, feature in config.image_features.items():
        batch[key] = torch.rand(batch_size, *feature.shape, generator=generator)
    return batch


@pytest.fixture
def tiny_config() -> FlowVLAConfig:
    return make_tiny_config()


OBJECTS_KEY = "observation.sim_object_positions"
NAMED_OBJECTS_KEY = "observation.sim_object_positions_by_name"


def write_tiny_dataset(root, object_positions: bool = False):
    """A 3-episode LeRobotDataset (images stored as PNG, no video codec needed) written with LeRobot's API;
    `object_positions` adds the per-frame object-position features the virtual arm records (9 numbers each: in
    the instruction's order, and by name, where the second task names the second object)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    names = [f"joint_{i}" for i in range(STATE_DIM)]
    features = {
        "observation.state": {"dtype": "float32", "shape": (STATE_DIM,), "names": names},
        "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": names},
        IMAGE_KEY: {"dtype": "image", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
    }
    if object_positions:
        for key in (OBJECTS_KEY, NAMED_OBJECTS_KEY):
            features[key] = {"dtype": "float32", "shape": (9,), "names": [f"p{i}" for i in range(9)]}
    dataset = LeRobotDataset.create(
        repo_id=f"local/{root.name}", fps=10, features=features, root=root, robot_type="synthetic",
        use_videos=False,
    )
    rng = np.random.default_rng(0)
    for episode in range(3):
        for frame in range(12):
            phase = frame / 12.0
            state = np.full(STATE_DIM, np.sin(phase + episode), dtype=np.float32)
            values = {
                "observation.state": state,
                "action": state + 0.1,
                IMAGE_KEY: rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                "task": "move the arm" if episode % 2 == 0 else "wave the arm",
            }
            if object_positions:
                values[OBJECTS_KEY] = rng.uniform(-0.2, 0.3, 9).astype(np.float32)
                by_name = [0, 1, 2, 3, 4, 5] if episode % 2 == 0 else [3, 4, 5, 0, 1, 2]
                values[NAMED_OBJECTS_KEY] = values[OBJECTS_KEY][[*by_name, 6, 7, 8]]
            dataset.add_frame(values)
        dataset.save_episode()
    dataset.finalize()
    return root


@pytest.fixture(scope="session")
def tiny_dataset_root(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("datasets") / "flow_vla_tiny")


@pytest.fixture(scope="session")
def tiny_objects_dataset_root(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("datasets") / "flow_vla_tiny_objects", object_positions=True)
