"""A tiny policy trained on a two-target scene follows the instruction and knows when inputs are unfamiliar.

Every scene has a red and a blue target at random places (drawn in the camera image and listed in the
state); the demonstrated chunk moves to the red one for "reach the red target" and to the blue one for
"reach the blue target". Only the instruction says which is right, so following it needs language.
"""

from __future__ import annotations

import pytest
import torch
from lerobot.configs.types import FeatureType, PolicyFeature

from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig
from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import (
    make_flow_vla_pre_post_processors,
)
from lerobot_vla_plugin.policies.flow_vla.uncertainty import (
    calibrate_uncertainty_threshold,
    perturb_observation,
)

from .conftest import TINY_POLICY_KWARGS

INSTRUCTIONS = ("reach the red target", "reach the blue target")
CHUNK = 8
TRAIN_STEPS = 400
BATCH_SIZE = 32


def two_target_scenes(batch_size: int, generator: torch.Generator, instruction_index: torch.Tensor | None = None):
    """Raw batch: image with two coloured squares, state = both target positions, action = path to the
    instructed one."""
    red = torch.rand(batch_size, 2, generator=generator) * 2 - 1
    blue = torch.rand(batch_size, 2, generator=generator) * 2 - 1
    if instruction_index is None:
        instruction_index = torch.randint(0, 2, (batch_size,), generator=generator)
    chosen = torch.where(instruction_index[:, None] == 0, red, blue)
    images = torch.zeros(batch_size, 3, 32, 32)
    for i in range(batch_size):
        for channel, position in ((0, red[i]), (2, blue[i])):
            col, row = ((position + 1) / 2 * 26).long().tolist()
            images[i, channel, row : row + 6, col : col + 6] = 1.0
    progress = torch.linspace(1.0 / CHUNK, 1.0, CHUNK)[None, :, None]
    actions = progress * chosen[:, None, :]
    return {
        "observation.state": torch.cat([red, blue], dim=1),
        "observation.images.front": images,
        "action": actions,
        "action_is_pad": torch.zeros(batch_size, CHUNK, dtype=torch.bool),
        "task": [INSTRUCTIONS[int(i)] for i in instruction_index],
    }, red, blue


def train_tiny_policy(single_instruction: bool, outlier_exposure_fraction: float):
    """A few hundred steps on freshly drawn scenes (an endless synthetic dataset)."""
    torch.manual_seed(0)
    config = FlowVLAConfig(
        device="cpu",
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(4,)),
            "observation.images.front": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 32, 32)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(2,))},
        **{**TINY_POLICY_KWARGS, "dim_model": 48, "expert_dim": 48},
        outlier_exposure_fraction=outlier_exposure_fraction,
    )
    policy = FlowVLAPolicy(config)
    preprocessor, _ = make_flow_vla_pre_post_processors(config, dataset_stats=None)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=TRAIN_STEPS, pct_start=0.1)
    generator = torch.Generator().manual_seed(0)
    instruction = torch.zeros(BATCH_SIZE, dtype=torch.long) if single_instruction else None
    policy.train()
    for _ in range(TRAIN_STEPS):
        batch, _, _ = two_target_scenes(BATCH_SIZE, generator, instruction)
        loss, _ = policy.forward(preprocessor(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
    policy.eval()
    return policy, preprocessor


@pytest.fixture(scope="module")
def instruction_following_policy():
    return train_tiny_policy(single_instruction=False, outlier_exposure_fraction=0.0)


@pytest.fixture(scope="module")
def outlier_exposed_policy():
    """Trained on one instruction only, so any spread on clean inputs is the model's own imprecision."""
    return train_tiny_policy(single_instruction=True, outlier_exposure_fraction=0.25)


@pytest.mark.slow
def test_policy_follows_the_instruction(instruction_following_policy):
    policy, preprocessor = instruction_following_policy
    generator = torch.Generator().manual_seed(123)
    count = 64
    for index, name in enumerate(("red", "blue")):
        batch, red, blue = two_target_scenes(count, generator, torch.full((count,), index))
        torch.manual_seed(0)
        final = policy.predict_action_chunk(preprocessor(batch))[:, -1]
        named, other = (red, blue) if name == "red" else (blue, red)
        closer = (final - named).norm(dim=1) < (final - other).norm(dim=1)
        # Scenes where the targets nearly coincide are ambiguous; judge only the rest.
        separated = (red - blue).norm(dim=1) > 0.5
        assert closer[separated].float().mean() >= 0.9, f"'{INSTRUCTIONS[index]}' followed too rarely"


@pytest.mark.slow
def test_uncertainty_is_higher_on_perturbed_inputs_and_calibrates(outlier_exposed_policy, tmp_path):
    policy, preprocessor = outlier_exposed_policy
    generator = torch.Generator().manual_seed(7)
    red = torch.zeros(32, dtype=torch.long)
    held_out = [preprocessor(two_target_scenes(32, generator, red)[0]) for _ in range(2)]

    torch.manual_seed(0)
    in_scores = torch.cat([policy.action_uncertainty(batch) for batch in held_out])
    out_scores = torch.cat([policy.action_uncertainty(perturb_observation(batch)) for batch in held_out])
    print(f"uncertainty: in-distribution {in_scores.mean():.4f}, perturbed {out_scores.mean():.4f}")
    assert out_scores.mean() > 1.5 * in_scores.mean()

    calibration = calibrate_uncertainty_threshold(policy, held_out)
    print(f"calibration: threshold {calibration.threshold:.4f}, AUROC {calibration.auroc:.3f}, "
          f"false alarms {calibration.false_alarm_rate:.2f}, detection {calibration.detection_rate:.2f}")
    assert calibration.auroc > 0.9
    assert calibration.false_alarm_rate <= 0.05
    assert calibration.detection_rate > 0.8
    assert policy.config.uncertainty_threshold == calibration.threshold

    # The threshold travels with the checkpoint, ready for a rollout to hand over to a human.
    policy.save_pretrained(tmp_path)
    reloaded = FlowVLAPolicy.from_pretrained(tmp_path)
    assert reloaded.config.uncertainty_threshold == calibration.threshold
    fresh, _, _ = two_target_scenes(16, torch.Generator().manual_seed(99), red[:16])
    fresh = preprocessor(fresh)
    torch.manual_seed(1)
    assert reloaded.is_uncertain(perturb_observation(fresh)).float().mean() > 0.8
    assert reloaded.is_uncertain(fresh).float().mean() < 0.2


def test_outlier_exposure_leaves_lerobot_padding_masks_alone():
    """LeRobot adds `<camera>_is_pad` masks under the image prefix when observations have delta indices."""
    import torch

    from lerobot_vla_plugin.policies.flow_vla.uncertainty import corrupt_observations

    batch = {
        "observation.images.front": torch.rand(8, 1, 3, 12, 16),
        "observation.images.front_is_pad": torch.zeros(8, 1, dtype=torch.bool),
        "observation.state": torch.zeros(8, 1, 6),
        "observation.state_is_pad": torch.zeros(8, 1, dtype=torch.bool),
    }
    corrupted = corrupt_observations(batch, 3)
    assert torch.equal(corrupted["observation.images.front_is_pad"], batch["observation.images.front_is_pad"])
    assert torch.equal(corrupted["observation.images.front"][:5], batch["observation.images.front"][:5])
    assert corrupted["observation.images.front"].shape == (8, 1, 3, 12, 16)
    assert not torch.equal(corrupted["observation.state"][5:], batch["observation.state"][5:]) or not torch.equal(
        corrupted["observation.images.front"][5:], batch["observation.images.front"][5:])
    cameras_only = corrupt_observations(batch, 3, displace_state=False)
    assert torch.equal(cameras_only["observation.state"], batch["observation.state"])
    assert not torch.equal(cameras_only["observation.images.front"][5:], batch["observation.images.front"][5:])
