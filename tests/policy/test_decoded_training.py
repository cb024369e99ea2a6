"""Training from frames decoded once: the samples are LeRobot's own, and the checkpoint loads like lerobot-train's."""

from __future__ import annotations

import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_vla_plugin.training.decoded_dataset import DecodedFrameDataset

from .conftest import IMAGE_KEY


@pytest.mark.parametrize("far_offsets", [[], [8, 20]], ids=["chunk", "chunk and far-future steps"])
def test_samples_match_lerobot_dataset_with_the_same_chunk(tiny_dataset_root, far_offsets):
    chunk = 5
    fps = 10
    offsets = list(range(chunk)) + far_offsets
    plain = LeRobotDataset("local/flow_vla_tiny", root=tiny_dataset_root)
    reference = LeRobotDataset("local/flow_vla_tiny", root=tiny_dataset_root,
                               delta_timestamps={"action": [i / fps for i in offsets]})
    decoded = DecodedFrameDataset(plain, chunk_size=chunk, action_offsets=offsets if far_offsets else None)
    assert len(decoded) == len(reference) == 36 and decoded.num_episodes == 3
    for index in (0, 5, 10, 11, 12, 35):  # includes the last frames, whose chunks run past the episode end
        ours, theirs = decoded[index], reference[index]
        torch.testing.assert_close(ours["observation.state"], theirs["observation.state"])
        torch.testing.assert_close(ours["action"], theirs["action"])
        assert torch.equal(ours["action_is_pad"], theirs["action_is_pad"])
        torch.testing.assert_close(ours[IMAGE_KEY], theirs[IMAGE_KEY], atol=1 / 255, rtol=0)
        assert ours["task"] == theirs["task"]
    assert decoded[11]["action_is_pad"].tolist() == [False, True, True, True, True] + [True] * len(far_offsets)


def test_a_subset_of_episodes_is_cached_alone(tiny_dataset_root):
    plain = LeRobotDataset("local/flow_vla_tiny", root=tiny_dataset_root)
    decoded = DecodedFrameDataset(plain, chunk_size=3, episodes=[1])
    assert len(decoded) == 12 and decoded.num_episodes == 1
    assert decoded[0]["task"] == "wave the arm"


def tiny_config_and_data(root):
    """A tiny flow_vla config for the tiny dataset's features, and the dataset decoded for its chunk."""
    from lerobot.configs.types import FeatureType
    from lerobot.datasets.utils import dataset_to_policy_features

    from .conftest import make_tiny_config

    plain = LeRobotDataset("local/flow_vla_tiny", root=root)
    config = make_tiny_config()
    features = dataset_to_policy_features(plain.meta.features)
    config.output_features = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    config.input_features = {k: f for k, f in features.items() if k not in config.output_features}
    return config, DecodedFrameDataset(plain, chunk_size=config.chunk_size)


def test_trained_checkpoint_loads_with_its_processors_and_acts(tiny_dataset_root, tmp_path):
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
    from lerobot_vla_plugin.training.decoded_training import train_policy

    config, data = tiny_config_and_data(tiny_dataset_root)
    logged = []
    result = train_policy(config, data, steps=6, batch_size=4, output_dir=tmp_path, log_every=3, log=logged.append)
    assert [step for step, _ in result.losses] == [3, 6] and len(logged) == 2
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in result.losses)

    loaded_config = PreTrainedConfig.from_pretrained(result.checkpoint)
    policy = FlowVLAPolicy.from_pretrained(result.checkpoint, config=loaded_config)
    preprocessor, postprocessor = make_pre_post_processors(loaded_config, pretrained_path=str(result.checkpoint))
    sample = data[4]
    observation = {key: value[None] for key, value in sample.items() if key.startswith("observation.")}
    observation["task"] = [sample["task"]]
    action = postprocessor(policy.select_action(preprocessor(observation)))
    assert action.shape == (1, 6) and torch.isfinite(action).all()


def test_a_spent_time_budget_ends_training_early_with_a_checkpoint(tiny_dataset_root, tmp_path):
    """An equal wall-time budget for policies whose steps cost very different amounts: a budget already spent
    after the first step stops there, says so, and still saves its checkpoint."""
    from lerobot_vla_plugin.training.decoded_training import train_policy

    config, data = tiny_config_and_data(tiny_dataset_root)
    logged = []
    result = train_policy(config, data, steps=50, batch_size=4, output_dir=tmp_path, log_every=100,
                          log=logged.append, time_budget_s=0.0)
    assert result.steps == 1
    assert any("budget is spent" in line for line in logged)
    assert (result.checkpoint / "model.safetensors").is_file()
