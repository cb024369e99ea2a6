"""The object-position auxiliary: a dataset's per-frame object positions (the virtual arm records them) reach
flow_vla through LeRobot's own loader and pre-processor, train the image encoder, and are never needed to act."""

from __future__ import annotations

import pytest
import torch
from lerobot.configs.types import FeatureType
from lerobot.datasets.lerobot_dataset import LeRobotDataset
from lerobot.datasets.utils import dataset_to_policy_features

from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import make_flow_vla_pre_post_processors
from lerobot_vla_plugin.training.decoded_dataset import DecodedFrameDataset

from .conftest import NAMED_OBJECTS_KEY, OBJECTS_KEY, TINY_POLICY_KWARGS


def config_for(root, **overrides):
    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

    meta = LeRobotDataset(f"local/{root.name}", root=root).meta
    features = dataset_to_policy_features(meta.features)
    outputs = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    inputs = {k: f for k, f in features.items() if k not in outputs}
    config = FlowVLAConfig(device="cpu", input_features=inputs, output_features=outputs,
                           **{**TINY_POLICY_KWARGS, "image_keypoints": 4, **overrides})
    return config, meta


def training_batch(root, config, meta):
    """A batch the way lerobot-train makes one: LeRobot's dataset and dataloader, then the pre-processor."""
    from lerobot.datasets.factory import resolve_delta_timestamps

    dataset = LeRobotDataset(f"local/{root.name}", root=root, delta_timestamps=resolve_delta_timestamps(config, meta))
    raw = next(iter(torch.utils.data.DataLoader(dataset, batch_size=6, shuffle=False)))
    preprocessor, _ = make_flow_vla_pre_post_processors(config, dataset_stats=meta.stats)
    return raw, preprocessor(raw)


def test_decoded_samples_carry_the_positions_lerobot_serves(tiny_objects_dataset_root):
    plain = LeRobotDataset("local/flow_vla_tiny_objects", root=tiny_objects_dataset_root)
    decoded = DecodedFrameDataset(plain, chunk_size=5)
    assert decoded.vector_keys == [OBJECTS_KEY, NAMED_OBJECTS_KEY]
    for index in (0, 13, 35):
        torch.testing.assert_close(decoded[index][OBJECTS_KEY], plain[index][OBJECTS_KEY])


def test_the_preprocessor_hands_the_policy_the_positions_in_metres(tiny_objects_dataset_root):
    """Not normalised: an object that never moves has a spread near zero (6e-9 m over 8 virtual demonstrations),
    and dividing by it would turn simulation jitter into a target of size 10 or more."""
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0)
    raw, batch = training_batch(tiny_objects_dataset_root, config, meta)
    assert raw[OBJECTS_KEY].shape == (6, 1, 9)  # lerobot-train serves observations at observation_delta_indices
    torch.testing.assert_close(batch[OBJECTS_KEY], raw[OBJECTS_KEY])
    assert not torch.equal(batch["observation.state"], raw["observation.state"])  # the state is normalised


def test_the_positions_stay_in_metres_when_lerobot_train_fine_tunes_a_saved_checkpoint(
        tiny_objects_dataset_root, tmp_path):
    """`lerobot-train --policy.path=CHECKPOINT` reloads the saved pre-processor and replaces its normaliser's
    features (all of the policy's) and stats (the new dataset's), exactly as below: the positions must still pass
    unchanged, or the object losses start near 100 and the fine-tune wrecks the checkpoint."""
    from lerobot.policies.factory import make_pre_post_processors

    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0)
    raw, _ = training_batch(tiny_objects_dataset_root, config, meta)
    preprocessor, postprocessor = make_flow_vla_pre_post_processors(config, dataset_stats=meta.stats)
    preprocessor.save_pretrained(tmp_path)
    postprocessor.save_pretrained(tmp_path)
    config.pretrained_path = tmp_path
    reloaded, _ = make_pre_post_processors(config, pretrained_path=str(tmp_path), preprocessor_overrides={
        "device_processor": {"device": "cpu"},
        "normalizer_processor": {"stats": meta.stats, "features": {**config.input_features, **config.output_features},
                                 "norm_map": config.normalization_mapping},
        "rename_observations_processor": {"rename_map": {}}})
    batch = reloaded(raw)
    for key in (OBJECTS_KEY, NAMED_OBJECTS_KEY):
        torch.testing.assert_close(batch[key], raw[key])
    assert not torch.equal(batch["observation.state"], raw["observation.state"])


def test_the_object_loss_reaches_the_image_encoder(tiny_objects_dataset_root):
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    torch.manual_seed(0)
    policy = FlowVLAPolicy(config)
    policy.train()
    loss, info = policy.forward(batch)
    assert info["object_position_loss"] > 0

    readout = policy.model.object_readout
    prefix, mask, _ = policy.model.encode_prefix_tokens(batch)
    predicted = readout(prefix, mask)
    assert predicted.shape == (6, 3, 2)  # x, y of each object
    policy.zero_grad()
    ((predicted - batch[OBJECTS_KEY][:, -1].reshape(6, 3, 3)[..., :2] * 10) ** 2).mean().backward()
    encoder_grads = [p.grad for name, p in policy.model.prefix_encoder.named_parameters()
                     if "image" in name and p.grad is not None]
    assert encoder_grads and any(g.abs().sum() > 0 for g in encoder_grads)


def test_without_the_feature_or_the_weight_there_is_no_object_loss(tiny_dataset_root, tiny_objects_dataset_root):
    # A fine-tune of such a checkpoint on data without the positions (a real arm, a flywheel merge) trains on.
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    policy = FlowVLAPolicy(config)
    policy.train()
    _, info = policy.forward({k: v for k, v in batch.items() if k != OBJECTS_KEY})
    assert "object_position_loss" not in info and info["loss"] > 0

    off, meta = config_for(tiny_objects_dataset_root)
    assert FlowVLAPolicy(off).model.object_readout is None
    _, info = FlowVLAPolicy(off).forward(batch)
    assert "object_position_loss" not in info


def test_a_policy_trained_with_positions_acts_from_its_cameras_alone(tiny_objects_dataset_root):
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    policy = FlowVLAPolicy(config)
    policy.eval()
    observation = {k: v for k, v in batch.items() if k != OBJECTS_KEY and not k.startswith("action")}
    chunk = policy.predict_action_chunk(observation)
    assert chunk.shape == (6, config.chunk_size, 6) and torch.isfinite(chunk).all()


def test_a_position_feature_of_the_wrong_size_is_refused_with_the_fix(tiny_objects_dataset_root):
    with pytest.raises(ValueError, match="object_position_count=3"):
        FlowVLAPolicy(config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0,
                                 object_position_count=2)[0])


def test_object_tokens_carry_the_readout_estimate_to_the_action_expert(tiny_objects_dataset_root):
    """The expert reads the readout's estimate (three extra prefix tokens), never the recorded positions, and the
    action loss leaves the readout alone: only the position target trains it."""
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0,
                              object_position_tokens=True)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    torch.manual_seed(0)
    policy = FlowVLAPolicy(config)
    plain_prefix, _, _ = FlowVLAPolicy(config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0)[0]
                                       ).model.encode_prefix_tokens(batch)
    prefix, mask, _ = policy.model.encode_prefix_tokens(batch)
    assert prefix.shape[1] == plain_prefix.shape[1] + 3 and mask[:, -3:].all()

    observation = {k: v for k, v in batch.items() if k != OBJECTS_KEY and not k.startswith("action")}
    noise = policy._noise(6, torch.device("cpu"))
    chunk = policy.predict_action_chunk(observation, noise=noise)
    torch.testing.assert_close(policy.predict_action_chunk(batch, noise=noise), chunk)  # recorded: not an input
    with torch.no_grad():
        policy.model.object_readout.out.bias.add_(1.0)  # every estimate 1 dm further
    assert not torch.allclose(policy.predict_action_chunk(observation, noise=noise), chunk)

    policy.train()
    policy.zero_grad()
    loss, info = policy.forward({k: v for k, v in batch.items() if k != OBJECTS_KEY})
    loss.backward()
    assert "object_position_loss" not in info
    assert all(p.grad is None or not p.grad.any() for p in policy.model.object_readout.parameters())
    assert any(p.grad is not None and p.grad.any() for p in policy.model.object_tokens.parameters())


@pytest.mark.parametrize("recorded_noise_m", [-1.0, 0.0])
def test_object_tokens_train_on_the_recorded_positions_only_when_asked(tiny_objects_dataset_root, recorded_noise_m):
    """With object_tokens_recorded_noise_m >= 0 the expert's training input is the recorded positions, so moving
    them moves the action loss; by default it is the estimate, which the recorded positions only supervise."""
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0,
                              object_position_tokens=True, object_tokens_recorded_noise_m=recorded_noise_m)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    torch.manual_seed(0)
    policy = FlowVLAPolicy(config)
    moved = {**batch, OBJECTS_KEY: batch[OBJECTS_KEY] + 0.1}
    flow_losses = []
    for sample in (batch, moved):
        torch.manual_seed(1)  # the same flow noise, times and outlier samples for both
        flow_losses.append(policy.forward(sample)[1]["flow_loss"])
    assert (flow_losses[0] != flow_losses[1]) == (recorded_noise_m >= 0)

    policy.eval()  # acting: the estimate, whatever was recorded
    observation = {k: v for k, v in batch.items() if k != OBJECTS_KEY and not k.startswith("action")}
    noise = policy._noise(6, torch.device("cpu"))
    torch.testing.assert_close(policy.predict_action_chunk(moved, noise=noise),
                               policy.predict_action_chunk(observation, noise=noise))


def test_object_tokens_can_train_on_where_the_objects_were_at_the_episode_start(tiny_objects_dataset_root):
    """object_tokens_recorded_from="episode_start": the tokens carry the episode's first-frame positions (what "first"
    gives them at run time), so moving those moves the action loss and moving the frame's own does not; the
    readout still learns the frame's. A dataset without them is refused with the fix."""
    start_key = "observation.sim_object_start_positions"
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0, object_position_tokens=True,
                              object_tokens_recorded_noise_m=0.0, object_tokens_recorded_from="episode_start")
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    batch = {**batch, start_key: batch[OBJECTS_KEY][:1].expand_as(batch[OBJECTS_KEY]).clone()}
    torch.manual_seed(0)
    policy = FlowVLAPolicy(config)

    def losses(sample):
        torch.manual_seed(1)  # the same flow noise, times and outlier samples every time
        return policy.forward(sample)[1]

    across_the_table = torch.tensor([0.1, 0.1, 0.0]).repeat(3)  # x, y of every object; heights stay
    base = losses(batch)
    frame_moved = losses({**batch, OBJECTS_KEY: batch[OBJECTS_KEY] + across_the_table})
    start_moved = losses({**batch, start_key: batch[start_key] + across_the_table})
    assert frame_moved["flow_loss"] == base["flow_loss"]
    assert frame_moved["object_position_loss"] != base["object_position_loss"]
    assert start_moved["flow_loss"] != base["flow_loss"]
    assert start_moved["object_position_loss"] == base["object_position_loss"]
    with pytest.raises(KeyError, match="object_tokens_recorded_from=frame"):
        policy.forward({k: v for k, v in batch.items() if k != start_key})
    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

    with pytest.raises(ValueError, match="object_tokens_recorded_noise_m"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_position_tokens=True,
                      object_tokens_recorded_from="episode_start")


def test_the_readout_learns_only_from_objects_resting_where_they_started(tiny_objects_dataset_root):
    """An object lifted more than object_readout_max_lift_m above its height at the episode start is left out of the
    readout's loss (where it is then says nothing the loss may use); below that, and without the start positions or
    with a negative limit, every object counts."""
    start_key = "observation.sim_object_start_positions"

    def readout_loss(batch, **overrides):
        config, _ = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0, **overrides)
        torch.manual_seed(0)
        policy = FlowVLAPolicy(config)
        torch.manual_seed(1)
        return policy.forward(batch)[1]["object_position_loss"]

    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    batch = {**batch, start_key: batch[OBJECTS_KEY].clone()}
    instructed_cube_x, instructed_cube_z = 0, 2

    def moved(x=0.0, z=0.0):
        positions = batch[OBJECTS_KEY].clone()
        positions[..., instructed_cube_x] += x
        positions[..., instructed_cube_z] += z
        return {**batch, OBJECTS_KEY: positions}

    # Lifted 2 cm: moving it across the table changes nothing the readout learns...
    assert readout_loss(moved(z=0.02)) == readout_loss(moved(x=0.1, z=0.02))
    # ...resting (4 mm up is within the 5 mm default), or with the limit off, or without start positions, it does.
    assert readout_loss(moved(z=0.004)) != readout_loss(moved(x=0.1, z=0.004))
    off = {"object_readout_max_lift_m": -1.0}
    assert readout_loss(moved(z=0.02), **off) != readout_loss(moved(x=0.1, z=0.02), **off)
    without_start = {k: v for k, v in moved(z=0.02).items() if k != start_key}
    assert readout_loss(without_start) != readout_loss(
        {k: v for k, v in moved(x=0.1, z=0.02).items() if k != start_key})


def test_object_tokens_can_hold_the_first_estimate_of_an_episode(tiny_objects_dataset_root):
    """With object_tokens_at_run_time="first" the tokens keep what the episode's first chunk estimated, whatever
    later observations show, until reset(); the uncertainty samples read the held estimate but never set it."""
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0,
                              object_position_tokens=True, object_tokens_at_run_time="first")
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    torch.manual_seed(0)
    policy = FlowVLAPolicy(config)
    observation = {k: v for k, v in batch.items() if k != OBJECTS_KEY and not k.startswith("action")}
    camera = next(iter(config.image_features))
    moved_scene = {**observation, camera: torch.rand_like(observation[camera])}
    noise = policy._noise(6, torch.device("cpu"))
    live = FlowVLAPolicy(config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0,
                                    object_position_tokens=True)[0])
    live.load_state_dict(policy.state_dict())

    policy.sample_action_chunks(observation, num_samples=2)
    assert policy.held_object_positions is None
    first = policy.predict_action_chunk(observation, noise=noise)
    torch.testing.assert_close(first, live.predict_action_chunk(observation, noise=noise))
    held = policy.held_object_positions.clone()
    later = policy.predict_action_chunk(moved_scene, noise=noise)
    torch.testing.assert_close(policy.held_object_positions, held)
    assert not torch.allclose(live.model.encode_scene(moved_scene)[3], held)  # the live estimate moved ...
    with torch.no_grad():  # ... and the held tokens are what the expert read
        scene = policy.model.encode_scene(moved_scene, token_positions=(held, torch.ones(6)))
        expected = policy.model.sample(policy.model.cache_scene(scene.prefix, scene.mask, scene.state, scene.carried),
                                       noise, config.num_inference_steps)[:, :, : policy.action_dim]
    torch.testing.assert_close(later, expected)

    policy.reset()
    assert policy.held_object_positions is None
    policy.hold_object_positions(torch.zeros_like(held))  # a caller may set them (e.g. a known layout)
    policy.predict_action_chunk(observation, noise=noise)
    assert not policy.held_object_positions.any()


def test_object_positions_can_condition_every_expert_layer(tiny_objects_dataset_root):
    """object_position_conditioning: the positions the tokens carry also reach the expert's conditioning, and the
    action loss trains that path; without object tokens it is refused with the fix."""
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0, object_position_tokens=True,
                              object_tokens_recorded_noise_m=0.0, object_position_conditioning=True)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    torch.manual_seed(0)
    policy = FlowVLAPolicy(config)
    policy.train()
    loss, _ = policy.forward(batch)
    loss.backward()
    assert all(p.grad is not None and p.grad.any() for p in policy.model.object_condition.parameters())
    policy.eval()
    cache = policy.model.encode_prefix({k: v for k, v in batch.items() if k != OBJECTS_KEY})
    assert cache[3] is not None and cache[3].shape == (6, config.expert_dim)
    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

    with pytest.raises(ValueError, match="object_position_tokens=true"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_position_conditioning=True)


def test_held_object_tokens_need_object_tokens():
    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

    with pytest.raises(ValueError, match="object_position_tokens=true"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_tokens_at_run_time="first")
    with pytest.raises(ValueError, match="'live' or 'first'"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_position_tokens=True, object_tokens_at_run_time="x")


def test_recorded_token_positions_need_object_tokens():
    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

    with pytest.raises(ValueError, match="object_position_tokens=true"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_tokens_recorded_noise_m=0.01)


def test_object_tokens_without_the_readout_are_refused_with_the_fix(tiny_objects_dataset_root):
    with pytest.raises(ValueError, match="object_position_loss_weight=1.0"):
        config_for(tiny_objects_dataset_root, object_position_tokens=True)


@pytest.mark.parametrize("source", ["prefix", "keypoints"])
def test_a_keypoint_readout_cannot_copy_the_joint_angles(tiny_objects_dataset_root, source):
    """In a demonstration the arm already points at the cube it heads for; a readout of the prefix sees the state
    and can copy it, one of the image keypoints cannot."""
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0,
                              object_readout_source=source)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    torch.manual_seed(0)
    model = FlowVLAPolicy(config).model
    moved = {**batch, "observation.state": batch["observation.state"] + 1.0}
    with torch.no_grad():
        estimate = model.encode_scene(batch, with_estimate=True)[3]
        moved_estimate = model.encode_scene(moved, with_estimate=True)[3]
    assert estimate.shape == (6, 3, 2)
    assert torch.equal(estimate, moved_estimate) == (source == "keypoints")


def test_a_keypoint_readout_reads_the_images_and_the_instruction(tiny_objects_dataset_root):
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0,
                              object_readout_source="keypoints")
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    torch.manual_seed(0)
    model = FlowVLAPolicy(config).model
    image_key = next(iter(config.image_features))
    shifted = {**batch, image_key: batch[image_key].roll(shifts=8, dims=-1)}
    tokens = batch["observation.language.tokens"]
    retold = {**batch, "observation.language.tokens": torch.where(tokens > 0, (tokens + 1) % 256, tokens)}
    with torch.no_grad():
        estimate, from_shifted, from_retold = (model.encode_scene(b, with_estimate=True)[3]
                                               for b in (batch, shifted, retold))
    assert not torch.allclose(estimate, from_shifted)
    assert not torch.allclose(estimate, from_retold)


@pytest.mark.parametrize("overrides", [
    {"backbone": "pretrained", "pretrained_backbone": "local/vlm"},
    {"image_keypoints": 0},
])
def test_a_keypoint_readout_needs_the_small_backbone_with_keypoints(overrides):
    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

    with pytest.raises(ValueError, match="object_readout_source=prefix"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_readout_source="keypoints", **overrides)


def test_a_keypoint_readout_of_chosen_cameras_ignores_the_others():
    """A wrist camera moves with the arm; a readout told to read only the front camera is not moved by it."""
    from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import make_flow_vla_pre_post_processors

    from .conftest import make_raw_batch, make_tiny_config

    config = make_tiny_config(cameras=2, image_keypoints=4, object_position_loss_weight=1.0,
                              object_readout_source="keypoints", object_readout_cameras=("front",))
    torch.manual_seed(0)
    model = FlowVLAPolicy(config).model
    preprocessor, _ = make_flow_vla_pre_post_processors(config, dataset_stats=None)
    batch = preprocessor(make_raw_batch(config))
    for key, changes_estimate in (("observation.images.cam1", False), ("observation.images.front", True)):
        other_view = {**batch, key: batch[key].flip(-1)}
        with torch.no_grad():
            estimate = model.encode_scene(batch, with_estimate=True)[3]
            other_estimate = model.encode_scene(other_view, with_estimate=True)[3]
        assert torch.equal(estimate, other_estimate) != changes_estimate, key


def test_a_keypoint_readout_camera_that_does_not_exist_is_named():
    from .conftest import make_tiny_config

    with pytest.raises(ValueError, match=r"'wrist'.*cameras: \['front'\]"):
        FlowVLAPolicy(make_tiny_config(image_keypoints=4, object_position_loss_weight=1.0,
                                       object_readout_source="keypoints", object_readout_cameras=("wrist",)))


def test_the_slot_loss_teaches_the_objects_by_name_and_the_order_by_instruction():
    from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import SlotReadout, slot_readout_loss

    named = torch.rand(4, 3, 2)  # red cube, blue cube, bowl
    instructed = torch.stack([named[0], named[1], named[2][[1, 0, 2]], named[3][[1, 0, 2]]])  # red, red, blue, blue
    mask = torch.ones(4, 3)
    right = torch.full((4, 3, 3), -30.0)  # order logits: row = object in instruction order, column = slot
    right[:2, [0, 1, 2], [0, 1, 2]] = 30.0  # red task: instructed = slot 0 (red), other = slot 1
    right[2:, [0, 1, 2], [1, 0, 2]] = 30.0  # blue task: instructed = slot 1 (blue), other = slot 0
    assert slot_readout_loss(SlotReadout(named, right), named, instructed, mask) < 1e-6
    # slots that follow the instructed cube (where the arm heads) instead of a colour: wrong for the blue task
    following = instructed.clone()
    assert slot_readout_loss(SlotReadout(following, right), named, instructed, mask) > 0.01
    # the right slots, order logits that name the wrong ones: the cross-entropy says so
    assert slot_readout_loss(SlotReadout(named, right.flip(0)), named, instructed, mask) > 10
    # a lifted instructed cube (mask 0) teaches its named slot nothing
    off = named.clone()
    off[2, 1] += 1.0  # the blue slot of a blue-task sample
    mask[2, 0] = 0.0
    assert slot_readout_loss(SlotReadout(off, right), named, instructed, mask) < 1e-6


def test_an_appearance_readout_learns_the_objects_by_colour_and_the_order_from_the_instruction():
    """Synthetic images (a table colour, a red and a blue square, a white disc) at random places: the slots learn
    where each colour is, the instruction which one it names; the same picture told the other task swaps them."""
    from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import AppearanceObjectReadout, slot_readout_loss

    torch.manual_seed(0)
    readout = AppearanceObjectReadout(3, camera=0, dim=8)
    instructions = torch.randn(2, 8)  # "red", "blue"
    optimizer = torch.optim.Adam(readout.parameters(), lr=3e-3)
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.1, 0.9], [0.95, 0.95, 0.95]])

    def scenes(count):
        places = torch.rand(count, 3, 2) * 1.6 - 0.8  # red, blue, bowl in image coordinates [-1, 1]
        images = torch.tensor([0.7, 0.5, 0.3])[None, :, None, None].repeat(count, 1, 24, 32)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, 24), torch.linspace(-1, 1, 32), indexing="ij")
        for index, colour in enumerate(colours):
            size = 0.12 if index < 2 else 0.25
            inside = ((xs - places[:, index, :1, None]).abs() < size) & ((ys - places[:, index, 1:, None]).abs() < size)
            images = torch.where(inside[:, None], colour[None, :, None, None], images)
        task = torch.randint(0, 2, (count,))
        instructed = torch.where(task[:, None, None] == 0, places, places[:, [1, 0, 2]])
        return images, instructions[task], places, instructed

    for _ in range(400):
        images, instruction, named, instructed = scenes(32)
        estimate, slots = readout([images], instruction)
        loss = ((estimate - instructed) ** 2).mean() + slot_readout_loss(slots, named, instructed, torch.ones(32, 3))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    images, instruction, _, instructed = scenes(128)
    with torch.no_grad():
        estimate, slots = readout([images], instruction)
        swapped, same_slots = readout([images], instructions[1] - instruction + instructions[0])
    assert (estimate - instructed).norm(dim=-1).median() < 0.1  # the image is 2 across
    torch.testing.assert_close(same_slots.slots, slots.slots)  # the instruction does not move the slots ...
    torch.testing.assert_close(swapped[:, :2], estimate[:, [1, 0]], atol=0.05, rtol=0)  # ... it only orders them


def test_a_policy_with_an_appearance_readout_trains_the_slots_and_their_order(tiny_objects_dataset_root):
    config, meta = config_for(tiny_objects_dataset_root, object_position_loss_weight=1.0,
                              object_readout_source="appearance", object_position_tokens=True,
                              object_tokens_at_run_time="first", object_readout_lr_scale=10.0)
    _, batch = training_batch(tiny_objects_dataset_root, config, meta)
    torch.manual_seed(0)
    policy = FlowVLAPolicy(config)
    policy.train()
    loss, info = policy.forward(batch)
    assert info["object_slot_loss"] > 0 and info["object_position_loss"] > 0
    loss.backward()
    readout = policy.model.object_readout
    assert readout.slot_order.weight.grad.abs().sum() > 0 and readout.colour[0].weight.grad.abs().sum() > 0
    groups = policy.get_optim_params()
    assert groups[1]["lr"] == config.optimizer_lr * 10 and {id(p) for p in groups[1]["params"]} == {
        id(p) for p in readout.parameters()}
    assert sum(len(group["params"]) for group in groups) == len(list(policy.parameters()))
    policy.eval()
    policy.reset()
    with torch.no_grad():
        policy.predict_action_chunk(batch)
    assert policy.held_object_positions.shape == (6, 3, 2)
    # without the by-name positions (a dataset recorded before them) it says what to do
    del batch[NAMED_OBJECTS_KEY]
    policy.train()
    with pytest.raises(KeyError, match="record it again with `lerobot-vla record --virtual so101`"):
        policy.forward(batch)


def test_an_appearance_readout_needs_the_small_backbone():
    from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

    with pytest.raises(ValueError, match="object_readout_source=prefix"):
        FlowVLAConfig(object_position_loss_weight=1.0, object_readout_source="appearance", backbone="pretrained",
                      pretrained_backbone="local/vlm")
