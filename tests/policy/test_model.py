"""flow_vla as a torch model: loss, masking, sampling, action queue, RTC and checkpoints."""

from __future__ import annotations

import pytest
import torch
from lerobot.policies.factory import make_pre_post_processors
from lerobot.processor import PolicyProcessorPipeline
from lerobot.processor.converters import batch_to_transition, transition_to_batch

from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import (
    make_flow_vla_pre_post_processors,
)

from .conftest import CHUNK, make_raw_batch, make_tiny_config


def preprocessed(config, **kwargs):
    preprocessor, _ = make_flow_vla_pre_post_processors(config, dataset_stats=None)
    return preprocessor(make_raw_batch(config, **kwargs))


def fixed_noise_and_time(config, batch_size=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch_size, config.chunk_size, config.max_action_dim, generator=generator)
    return noise, torch.rand(batch_size, generator=generator)


def test_forward_backward_reaches_every_trainable_parameter(tiny_config):
    torch.manual_seed(0)
    policy = FlowVLAPolicy(tiny_config)
    policy.train()
    loss, info = policy.forward(preprocessed(tiny_config))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(info) >= {"loss", "flow_loss", "shortcut_loss"}
    loss.backward()
    missing = [name for name, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert len(policy.get_optim_params()) == len(list(policy.parameters()))


def test_padded_steps_do_not_change_the_loss(tiny_config):
    policy = FlowVLAPolicy(tiny_config)
    policy.eval()  # no shortcut sampling: the loss is a deterministic function of (noise, time)
    batch = preprocessed(tiny_config)
    batch["action_is_pad"][:, CHUNK - 3 :] = True
    noise, time = fixed_noise_and_time(tiny_config)
    loss, _ = policy.forward(dict(batch), noise=noise, time=time)
    garbage = dict(batch)
    garbage["action"] = batch["action"].clone()
    garbage["action"][:, CHUNK - 3 :] = 1e3
    loss_with_garbage, _ = policy.forward(garbage, noise=noise, time=time)
    torch.testing.assert_close(loss, loss_with_garbage)

    # ... while the same change on steps that are not marked as padding does change it.
    garbage["action_is_pad"] = torch.zeros_like(batch["action_is_pad"])
    loss_unmasked, _ = policy.forward(garbage, noise=noise, time=time)
    assert loss_unmasked > 10 * loss


def test_padded_action_dims_get_no_gradient():
    config = make_tiny_config(action_dim=4)  # max_action_dim is 8: dims 4..7 are padding
    policy = FlowVLAPolicy(config)
    policy.eval()
    noise, time = fixed_noise_and_time(config)
    loss, _ = policy.forward(preprocessed(config), noise=noise, time=time)
    loss.backward()
    output_rows = policy.model.expert.action_out.weight.grad
    assert output_rows[:4].abs().sum() > 0
    assert torch.count_nonzero(output_rows[4:]) == 0
    assert torch.count_nonzero(policy.model.expert.action_out.bias.grad[4:]) == 0


@pytest.mark.parametrize("parametrization", ["velocity", "clean_action"])
def test_loss_is_the_masked_flow_matching_error(parametrization):
    """x_t = t·noise + (1−t)·actions, velocity target noise − actions. With the velocity parametrization
    the loss is the masked MSE to that target; with the clean-action one the expert's output â defines
    v = (x_t − â)/t and the loss is t²‖v − target‖², which equals ‖â − actions‖²."""
    config = make_tiny_config(parametrization=parametrization)
    policy = FlowVLAPolicy(config)
    policy.eval()
    batch = preprocessed(config)
    batch["action_is_pad"][0, 5:] = True
    noise, time = fixed_noise_and_time(config)
    captured = {}
    handle = policy.model.expert.register_forward_hook(lambda m, args, out: captured.update(x_t=args[0], out=out))
    loss, _ = policy.forward(batch, noise=noise, time=time)
    handle.remove()
    actions = torch.nn.functional.pad(batch["action"], (0, config.max_action_dim - 6))
    expected_x_t = time[:, None, None] * noise + (1 - time[:, None, None]) * actions
    torch.testing.assert_close(captured["x_t"], expected_x_t)
    velocity_target = noise - actions
    if parametrization == "velocity":
        velocity = captured["out"]
    else:
        velocity = (captured["x_t"] - captured["out"]) / time[:, None, None]
    weight = torch.ones_like(time) if parametrization == "velocity" else time**2
    mask = (~batch["action_is_pad"]).float()[:, :, None] * (torch.arange(8) < 6).float()
    expected = (weight[:, None, None] * (velocity - velocity_target) ** 2 * mask).sum() / mask.sum()
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)


def test_time_is_sampled_from_a_scaled_beta_distribution(tiny_config):
    policy = FlowVLAPolicy(tiny_config)
    torch.manual_seed(0)
    time = policy.model.sample_time(20000, torch.device("cpu"))
    assert 0.001 <= time.min() and time.max() <= 1.0
    # Beta(1.5, 1) has mean 0.6; scaled by 0.999 and offset by 0.001.
    assert abs(time.mean().item() - (0.6 * 0.999 + 0.001)) < 0.01


@pytest.mark.parametrize("cameras", [1, 3])
def test_sampling_shapes_and_seeded_determinism(cameras):
    config = make_tiny_config(cameras=cameras)
    policy = FlowVLAPolicy(config)
    batch = preprocessed(config, batch_size=3)
    for steps in (1, 2, 4, 10):
        chunk = policy.predict_action_chunk(batch, num_steps=steps)
        assert chunk.shape == (3, CHUNK, 6)
    torch.manual_seed(7)
    first = policy.predict_action_chunk(batch)
    torch.manual_seed(7)
    second = policy.predict_action_chunk(batch)
    torch.manual_seed(8)
    third = policy.predict_action_chunk(batch)
    torch.testing.assert_close(first, second)
    assert not torch.allclose(first, third)


def test_averaged_draws_are_the_mean_of_single_draws_from_the_same_noises_encoded_once(tiny_config):
    policy = FlowVLAPolicy(tiny_config)
    batch = preprocessed(tiny_config, batch_size=2)
    noise = torch.randn(2 * 4, CHUNK, tiny_config.max_action_dim, generator=torch.Generator().manual_seed(5))
    singles = torch.stack([policy.predict_action_chunk(batch, noise=noise[i::4]) for i in range(4)], dim=1)
    policy.config.inference_draws = 4
    calls = {"prefix": 0}
    policy.model.prefix_encoder.register_forward_hook(lambda *a: calls.__setitem__("prefix", calls["prefix"] + 1))
    averaged = policy.predict_action_chunk(batch, noise=noise)
    assert calls["prefix"] == 1 and averaged.shape == (2, CHUNK, 6)
    torch.testing.assert_close(averaged, singles.mean(dim=1))
    assert not torch.allclose(averaged, singles[:, 0])  # the draws differ: averaging changed the chunk
    with pytest.raises(ValueError, match="inference_draws 4 need 8"):
        policy.predict_action_chunk(batch, noise=noise[:2])


def test_select_action_replays_the_chunk_then_recomputes(tiny_config):
    policy = FlowVLAPolicy(tiny_config)
    preprocessor, postprocessor = make_flow_vla_pre_post_processors(tiny_config, dataset_stats=None)
    raw = make_raw_batch(tiny_config, batch_size=1)
    observation = preprocessor({k: v for k, v in raw.items() if k not in ("action", "action_is_pad")})
    torch.manual_seed(3)
    chunk = policy.predict_action_chunk(observation)
    torch.manual_seed(3)
    actions = [policy.select_action(observation) for _ in range(CHUNK)]
    torch.testing.assert_close(torch.stack(actions, dim=1), chunk)
    assert len(policy._action_queue) == 0
    policy.select_action(observation)
    assert len(policy._action_queue) == CHUNK - 1
    policy.reset()
    assert len(policy._action_queue) == 0
    assert postprocessor(actions[0]).shape == (1, 6)


def test_prefix_is_encoded_once_per_chunk_whatever_the_step_count(tiny_config):
    policy = FlowVLAPolicy(tiny_config)
    batch = preprocessed(tiny_config, batch_size=2)
    calls = {"prefix": 0, "expert": 0}
    policy.model.prefix_encoder.register_forward_hook(lambda *a: calls.__setitem__("prefix", calls["prefix"] + 1))
    policy.model.expert.register_forward_hook(lambda *a: calls.__setitem__("expert", calls["expert"] + 1))
    policy.predict_action_chunk(batch, num_steps=10)
    assert calls == {"prefix": 1, "expert": 10}


def test_rtc_guidance_keeps_the_start_of_the_previous_chunk(tiny_config):
    assert FlowVLAPolicy.supports_rtc()
    policy = FlowVLAPolicy(tiny_config)
    batch = preprocessed(tiny_config, batch_size=1)
    previous = torch.full((1, CHUNK, 6), 0.7)
    torch.manual_seed(0)
    free = policy.predict_action_chunk(batch, num_steps=10)
    torch.manual_seed(0)
    guided = policy.predict_action_chunk(
        batch, inference_delay=3, prev_chunk_left_over=previous, num_steps=10, execution_horizon=6
    )
    assert guided.shape == free.shape
    error_free = (free[:, :3] - previous[:, :3]).abs().mean()
    error_guided = (guided[:, :3] - previous[:, :3]).abs().mean()
    assert error_guided < 0.5 * error_free


def test_save_and_load_round_trip_offline(tiny_config, tmp_path):
    torch.manual_seed(0)
    policy = FlowVLAPolicy(tiny_config)
    policy.config.uncertainty_threshold = 0.123
    preprocessor, postprocessor = make_flow_vla_pre_post_processors(tiny_config, dataset_stats=None)
    policy.save_pretrained(tmp_path)
    preprocessor.save_pretrained(tmp_path)
    postprocessor.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"} <= {
        p.name for p in tmp_path.iterdir()
    }

    loaded = FlowVLAPolicy.from_pretrained(tmp_path)
    assert loaded.config.uncertainty_threshold == 0.123
    # The overrides LeRobot's record/train code applies by step name must all find their step.
    loaded_pre, loaded_post = make_pre_post_processors(
        loaded.config,
        pretrained_path=str(tmp_path),
        preprocessor_overrides={
            "device_processor": {"device": "cpu"},
            "rename_observations_processor": {"rename_map": {}},
            "normalizer_processor": {"stats": None},
        },
        postprocessor_overrides={"unnormalizer_processor": {"stats": None}},
    )
    raw = make_raw_batch(tiny_config, batch_size=2)
    batch_a, batch_b = preprocessor(dict(raw)), loaded_pre(dict(raw))
    torch.testing.assert_close(batch_a["observation.language.tokens"], batch_b["observation.language.tokens"])
    noise = torch.randn(2, CHUNK, tiny_config.max_action_dim)
    chunk = loaded.predict_action_chunk(batch_b, noise=noise)
    torch.testing.assert_close(policy.predict_action_chunk(batch_a, noise=noise), chunk)
    torch.testing.assert_close(loaded_post(chunk[:, 0]), postprocessor(chunk[:, 0]))


def test_byte_tokenizer_step_round_trips_through_pipeline_json(tiny_config, tmp_path):
    preprocessor, _ = make_flow_vla_pre_post_processors(tiny_config, dataset_stats=None)
    preprocessor.save_pretrained(tmp_path)
    reloaded = PolicyProcessorPipeline.from_pretrained(
        tmp_path, config_filename="policy_preprocessor.json", to_transition=batch_to_transition,
        to_output=transition_to_batch,
    )
    out = reloaded(make_raw_batch(tiny_config, batch_size=1, task="Go Left"))
    tokens = out["observation.language.tokens"][0]
    assert bytes((tokens[tokens > 0] - 1).tolist()).decode() == "go left"
    assert out["observation.language.attention_mask"][0].sum() == len("go left")


def test_missing_camera_error_names_the_fix(tiny_config):
    policy = FlowVLAPolicy(tiny_config)
    batch = preprocessed(tiny_config)
    del batch["observation.images.front"]
    with pytest.raises(KeyError, match="rename_map"):
        policy.predict_action_chunk(batch)


def test_image_augmentation_only_while_training():
    config = make_tiny_config(image_augmentation=True)
    policy = FlowVLAPolicy(config)
    batch = preprocessed(config)
    policy.eval()
    torch.testing.assert_close(policy.model.prepare_images(batch)[0], batch["observation.images.front"])
    policy.train()
    augmented = policy.model.prepare_images(batch)[0]
    assert augmented.shape == batch["observation.images.front"].shape
    assert not torch.allclose(augmented, batch["observation.images.front"])


def test_spatial_softmax_keypoints_locate_a_bright_spot():
    """Each keypoint is the expected image position of its detector's activation, in [-1, 1]: a detector that
    fires on one pixel reports that pixel, so a few-pixel object's position reaches the prefix exactly."""
    from lerobot_vla_plugin.policies.flow_vla.backbones import SpatialSoftmaxKeypoints

    keypoints = SpatialSoftmaxKeypoints(in_channels=1, keypoints=1, dim=4)
    with torch.no_grad():  # the detector passes its input through, sharpened
        keypoints.detector = torch.nn.Identity()
        keypoints.log_temperature.fill_(-5.0)
        keypoints.coordinate_proj.weight.copy_(torch.eye(4, 2))
        keypoints.coordinate_proj.bias.zero_()
        keypoints.keypoint_embedding.zero_()
    features = torch.zeros(2, 1, 24, 32)
    features[0, 0, 0, 31] = 1.0  # top right
    features[1, 0, 12, 8] = 1.0
    tokens = keypoints.embed(keypoints.coordinates(features))
    assert tokens.shape == (2, 1, 4)
    torch.testing.assert_close(tokens[0, 0, :2], torch.tensor([1.0, -1.0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(tokens[1, 0, :2], torch.tensor([-1 + 2 * 8 / 31, -1 + 2 * 12 / 23]), atol=1e-3, rtol=0)


def test_keypoint_tokens_join_the_prefix_and_train():
    config = make_tiny_config(image_keypoints=3, image_size=(32, 32), image_encoder_channels=(8, 16))
    policy = FlowVLAPolicy(config)
    batch = preprocessed(config)
    plain = FlowVLAPolicy(make_tiny_config())
    assert policy.model.encode_prefix(batch)[1].shape[-1] == plain.model.encode_prefix(batch)[1].shape[-1] + 3
    policy.train()
    loss, _ = policy.forward(batch)
    loss.backward()
    assert policy.model.prefix_encoder.keypoints.detector[0].weight.grad.abs().sum() > 0


def test_instruction_film_starts_as_the_identity_and_then_lets_the_instruction_steer_the_image_features():
    """FiLM added to an encoder trained without it changes nothing until trained (old checkpoints load and
    start where they were); once its heads learn, the same images give different image tokens for "red" and
    "blue", which is what lets a keypoint detector follow the cube the instruction names."""
    config = make_tiny_config(image_keypoints=3, image_size=(32, 32), image_encoder_channels=(8, 16))
    torch.manual_seed(0)
    without_film = FlowVLAPolicy(config)
    with_film = FlowVLAPolicy(make_tiny_config(
        image_keypoints=3, image_size=(32, 32), image_encoder_channels=(8, 16), language_film=True))
    missing, unexpected = with_film.load_state_dict(without_film.state_dict(), strict=False)
    assert unexpected == [] and missing and all(".film." in name for name in missing)
    red, blue = (preprocessed(config, task=f"put the {color} cube in the bowl") for color in ("red", "blue"))
    without_film.eval(), with_film.eval()
    torch.testing.assert_close(with_film.model.encode_prefix(red)[0][0][0], without_film.model.encode_prefix(red)[0][0][0])

    with_film.train()
    loss, _ = with_film.forward(red)
    loss.backward()
    assert all(head.weight.grad.abs().sum() > 0 for head in with_film.model.prefix_encoder.film.heads)

    encoder = with_film.model.prefix_encoder
    with torch.no_grad():
        for head in encoder.film.heads:
            head.weight.normal_(std=0.5)
        images = with_film.model.prepare_images(red)
        text = {key: encoder.token_embedding(batch["observation.language.tokens"]) for key, batch in
                (("red", red), ("blue", blue))}
        masks = {key: batch["observation.language.attention_mask"].bool() for key, batch in (("red", red), ("blue", blue))}
        red_tokens, _ = encoder.encode_images(images, encoder.film(text["red"], masks["red"]))
        blue_tokens, _ = encoder.encode_images(images, encoder.film(text["blue"], masks["blue"]))
    assert (red_tokens - blue_tokens).abs().max() > 1e-3


def test_far_future_actions_train_a_readout_whose_gradient_reaches_the_image_encoder():
    """The far-future auxiliary: the dataloader's extra steps (config.action_delta_indices past the chunk) are
    predicted from the prefix; steps past the episode end count for nothing; the image encoder learns from it."""
    config = make_tiny_config(future_action_offsets=(CHUNK + 3, CHUNK + 9), outlier_exposure_fraction=0.0,
                              shortcut_fraction=0.0)
    assert config.action_delta_indices == [*range(CHUNK), CHUNK + 3, CHUNK + 9]
    torch.manual_seed(0)
    policy = FlowVLAPolicy(config)
    policy.eval()  # deterministic given (noise, time)
    batch = preprocessed(config)
    noise, time = fixed_noise_and_time(config)
    batch["action_is_pad"][:, -1] = True  # the farthest step lies past the episode end
    loss, info = policy.forward(dict(batch), noise=noise, time=time)
    assert info["future_loss"] > 0 and torch.isclose(loss, torch.tensor(info["loss"]))
    moved = dict(batch)
    moved["action"] = batch["action"].clone()
    moved["action"][:, -1] = 1e3
    torch.testing.assert_close(policy.forward(moved, noise=noise, time=time)[0], loss)
    moved["action"][:, CHUNK] = 1e3  # a real far-future step does count
    assert policy.forward(moved, noise=noise, time=time)[1]["future_loss"] > 10 * info["future_loss"]

    policy.zero_grad()
    policy.model.prefix_encoder.zero_grad()
    future_only = policy.model.future_readout(*policy.model.encode_prefix_tokens(batch)[:2]).pow(2).mean()
    future_only.backward()
    assert policy.model.prefix_encoder.image_encoder[0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="future_action_offsets"):
        make_tiny_config(future_action_offsets=(CHUNK - 1,))


def test_chunk_steps_carry_a_fixed_step_code_unless_learned_alone():
    """Near t = 1 the expert's input is noise: the sine-cosine step code is what tells the chunk's steps apart.
    It is a non-persistent buffer, so checkpoints load whichever encoding they were saved with."""
    sinusoidal = FlowVLAPolicy(make_tiny_config())
    code = sinusoidal.model.expert.step_code
    assert code.shape[0] == CHUNK and torch.cdist(code, code).add(torch.eye(CHUNK) * 1e3).min() > 0.5
    assert "model.expert.step_code" not in sinusoidal.state_dict()
    learned = FlowVLAPolicy(make_tiny_config(chunk_step_encoding="learned"))
    assert learned.model.expert.step_code.abs().max() == 0
    learned.load_state_dict(sinusoidal.state_dict())

    def step_spread(policy):
        # The same noise at every step and no learned code: only the fixed code can make the steps differ.
        policy.model.expert.position.data.zero_()
        batch = preprocessed(policy.config, batch_size=2)
        x_t = torch.randn(2, 1, policy.config.max_action_dim).expand(2, CHUNK, -1)
        time = torch.ones(2)
        with torch.no_grad():
            out = policy.model.expert(x_t, time, torch.zeros(2), policy.model.encode_prefix(batch))
        return (out - out[:, :1]).abs().amax().item()

    assert step_spread(sinusoidal) > 1e-3
    assert step_spread(learned) < 1e-5
    with pytest.raises(ValueError, match="chunk_step_encoding"):
        make_tiny_config(chunk_step_encoding="rope")
