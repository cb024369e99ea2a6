"""object_keyposes: the object tokens' positions become the joint angles that hover the SO-101's gripper over each
object (its real MuJoCo kinematics), in the policy's normalised action units, and the expert's gates add them to
its arm joints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig
from lerobot_vla_plugin.policies.flow_vla.keyposes import KEYPOSE_JOINTS, ObjectKeyposes
from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import OBJECT_POSITION_SCALE, FlowVLAPolicy

from .conftest import OBJECTS_KEY
from .test_object_positions import config_for, training_batch

ACTION_STATS = {"mean": [-2.0, -7.0, 21.0, 70.0, 5.0, 27.0], "std": [36.0, 25.0, 22.0, 15.0, 27.0, 12.0]}
KEYPOSE_OPTIONS = {"object_position_loss_weight": 1.0, "object_position_tokens": True,
                   "object_tokens_recorded_noise_m": 0.0, "object_keyposes": "so101"}


def placements(count: int, seed: int = 0) -> np.ndarray:
    """Table x/y (metres) where the virtual SO-101 places cubes and the bowl: 15-23.5 cm from the pan axis,
    +-60 degrees around it."""
    from lerobot_vla_plugin.sim.so101 import PAN_AXIS_XY

    rng = np.random.default_rng(seed)
    radius, angle = rng.uniform(0.15, 0.235, count), rng.uniform(-1.05, 1.05, count)
    return PAN_AXIS_XY + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def test_a_keypose_puts_the_gripper_over_the_object_at_each_height_pointing_down():
    """Undo the normalisation the way the post-processor does (x * std + mean, degrees), put the angles on the
    MuJoCo arm, and the grasp site is where the keypose says: over the object, at the hover height (the first 40)
    and at the grasp height (the next 40), jaws down."""
    from lerobot_vla_plugin.sim.kinematics import TopDownIK
    from lerobot_vla_plugin.sim.so101 import SO101Sim

    heights = (0.06, 0.016)
    keyposes = ObjectKeyposes("so101", heights, OBJECT_POSITION_SCALE, ACTION_STATS)
    points = placements(40)
    normalised = keyposes(torch.tensor(points * OBJECT_POSITION_SCALE, dtype=torch.float32)[None])[0].double()
    assert normalised.shape == (2 * 40, KEYPOSE_JOINTS)
    mean, std = (torch.tensor(ACTION_STATS[k][:KEYPOSE_JOINTS], dtype=torch.float64) for k in ("mean", "std"))
    angles = np.radians((normalised * std + mean).numpy()).reshape(2, 40, KEYPOSE_JOINTS)
    ik = TopDownIK(SO101Sim().model)
    for height, at_height in zip(heights, angles, strict=True):
        for point, arm in zip(points, at_height, strict=True):
            position, rotation = ik.site_pose(np.r_[arm, 0.0])
            assert np.linalg.norm(position - np.r_[point, height]) < 0.002
            assert rotation[2, 2] > 0.999  # the site's z axis (jaw tips -> wrist) points straight up: jaws down
    # The pan follows the object around the axis, the shoulder and elbow its distance from it; the pan does not
    # depend on the height, the shoulder does.
    assert np.ptp(angles[0, :, 0]) > np.radians(90) and np.ptp(angles[0, :, 1]) > np.radians(20)
    np.testing.assert_allclose(angles[0, :, 0], angles[1, :, 0], atol=1e-5)
    assert np.abs(angles[0, :, 1] - angles[1, :, 1]).min() > np.radians(4)


def test_the_grasp_keypose_is_where_the_scripted_operator_closes_the_jaws():
    """The virtual arm's demonstrations: the joint targets when the operator starts to squeeze are the grasp
    keypose of the instructed cube's position, within a few degrees (its grasp point and heading vary a little)."""
    from lerobot_vla_plugin.sim.operator import ScriptedOperator
    from lerobot_vla_plugin.sim.so101 import SO101Sim

    keyposes = ObjectKeyposes("so101", (0.016,), 1.0)
    sim = SO101Sim()
    errors = []
    for seed in range(8):
        sim.reset(seed)
        task = ("red", "blue")[seed % 2]
        operator = ScriptedOperator(sim, task, np.random.default_rng(seed))
        operator.plan()
        times = np.arange(0.0, operator.duration_s, 0.01)
        targets = np.stack([operator.target_at(t) for t in times])
        widest = int(np.argmax(targets[:, 5]))
        squeeze = widest + int(np.argmax(targets[widest:, 5] < targets[widest, 5] - 0.01))
        cube = torch.tensor(sim.task_object_positions(task)[:2], dtype=torch.float32)
        errors.append(np.degrees(targets[squeeze, :KEYPOSE_JOINTS] - keyposes.radians(cube).numpy()))
    errors = np.abs(np.array(errors))
    assert np.median(errors, axis=0).max() < 3.0, errors.round(1)


def test_keypose_gates_add_the_keyposes_to_the_arm_joints_and_learn(tiny_objects_dataset_root):
    config, meta = config_for(tiny_objects_dataset_root, **KEYPOSE_OPTIONS)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    torch.manual_seed(0)
    policy = FlowVLAPolicy(config, dataset_stats=meta.stats)
    policy.train()
    loss, _ = policy.forward(batch)
    loss.backward()
    expert = policy.model.expert
    # Both start at zero (the expert begins as without keyposes); the action loss opens them.
    for module in (expert.keypose_gate, policy.model.keypose_condition[-1]):
        assert all(p.grad is not None and p.grad.any() for p in module.parameters())

    policy.eval()
    cache = policy.model.encode_prefix({k: v for k, v in batch.items() if k != OBJECTS_KEY})
    keyposes = cache[4]
    assert keyposes.shape == (6, config.object_position_count, KEYPOSE_JOINTS)
    with_grasp, _ = config_for(tiny_objects_dataset_root, **KEYPOSE_OPTIONS, object_grasp_keypose_height_m=0.016)
    grasp_model = FlowVLAPolicy(with_grasp, dataset_stats=meta.stats).model.eval()
    assert grasp_model.encode_prefix({k: v for k, v in batch.items() if k != OBJECTS_KEY})[4].shape == (
        6, 2 * config.object_position_count, KEYPOSE_JOINTS)
    with torch.no_grad():  # open the gate of the first object's joints fully, close every other
        expert.keypose_gate.weight.zero_()
        expert.keypose_gate.bias.zero_()
        expert.keypose_gate.bias[:KEYPOSE_JOINTS] = 1.0
        x_t = torch.randn(6, config.chunk_size, config.max_action_dim)
        time, step = torch.full((6,), 0.5), torch.zeros(6)
        moved = keyposes.clone()
        moved[:, 0] += torch.tensor([0.3, -0.2, 0.1, 0.05])
        difference = expert(x_t, time, step, (*cache[:4], moved)) - expert(x_t, time, step, cache)
    expected = torch.zeros(config.max_action_dim)
    expected[:KEYPOSE_JOINTS] = torch.tensor([0.3, -0.2, 0.1, 0.05])
    torch.testing.assert_close(difference, expected.expand_as(difference), atol=1e-4, rtol=0)


def test_the_action_statistics_travel_with_the_checkpoint(tiny_objects_dataset_root, tmp_path):
    """At run time (lerobot-record --policy.path, lerobot-vla eval) the policy is loaded without the dataset: the
    keyposes must come out the same."""
    config, meta = config_for(tiny_objects_dataset_root, **KEYPOSE_OPTIONS)
    policy = FlowVLAPolicy(config, dataset_stats=meta.stats)
    policy.save_pretrained(tmp_path)
    reloaded = FlowVLAPolicy.from_pretrained(tmp_path)
    positions = torch.tensor(placements(5) * OBJECT_POSITION_SCALE, dtype=torch.float32)[None]
    torch.testing.assert_close(reloaded.model.object_keyposes(positions), policy.model.object_keyposes(positions))
    stats = LeRobotDataset("local/x", root=tiny_objects_dataset_root).meta.stats["action"]
    torch.testing.assert_close(reloaded.model.object_keyposes.action_std,
                               torch.as_tensor(stats["std"][:KEYPOSE_JOINTS], dtype=torch.float32))


def test_keyposes_without_the_action_statistics_or_the_object_tokens_are_refused(tiny_objects_dataset_root):
    config, meta = config_for(tiny_objects_dataset_root, **KEYPOSE_OPTIONS)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    policy = FlowVLAPolicy(config)  # no dataset stats: the keyposes' units are unknown
    with pytest.raises(ValueError, match="action statistics"):
        policy.forward(batch)
    with pytest.raises(ValueError, match="object_position_tokens=true"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_keyposes="so101")
    from lerobot.configs.types import NormalizationMode

    with pytest.raises(ValueError, match="MEAN_STD"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_position_tokens=True, object_keyposes="so101",
                      normalization_mapping={"VISUAL": NormalizationMode.IDENTITY, "STATE": NormalizationMode.MEAN_STD,
                                             "ACTION": NormalizationMode.MIN_MAX})
    with pytest.raises(ValueError, match="object_keyposes=so101"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_position_tokens=True, object_grasp_keypose_height_m=0.016)
    with pytest.raises(ValueError, match="kinematics of"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_position_tokens=True, object_keyposes="ur5")
