"""Real-time chunking in flow_vla (rtc.py): prefix weights, the guidance step, guided sampling on a trained tiny
model, training-time prefix conditioning and its checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
from lerobot.utils.constants import OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS

from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import make_flow_vla_pre_post_processors
from lerobot_vla_plugin.policies.flow_vla.rtc import (
    RTCGuidance,
    guidance_weight,
    pad_leftover,
    prefix_weights,
    rtc_guidance_from_config,
)

from .conftest import ACTION_DIM, CHUNK, make_raw_batch, make_tiny_config

# ----- weights and the guidance step -----------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "exp"])
def test_prefix_weights_are_one_on_the_delay_then_decay_to_zero_at_the_horizon(schedule):
    weights = prefix_weights(inference_delay=3, execution_horizon=8, chunk_size=12, schedule=schedule)
    assert weights.shape == (12,)
    assert torch.equal(weights[:3], torch.ones(3))
    decay = weights[3:8]
    assert (decay > 0).all() and (decay < 1).all() and (decay[1:] < decay[:-1]).all()
    assert torch.equal(weights[8:], torch.zeros(4))


def test_prefix_weight_schedules_differ_and_a_short_horizon_keeps_the_delay():
    linear = prefix_weights(2, 8, 10, "linear")
    exp = prefix_weights(2, 8, 10, "exp")
    assert (exp[2:8] < linear[2:8]).all()  # exponential decay drops faster
    assert torch.equal(prefix_weights(2, 8, 10, "zeros"), torch.tensor([1.0, 1.0] + [0.0] * 8))
    assert torch.equal(prefix_weights(2, 8, 10, "ones"), torch.tensor([1.0] * 8 + [0.0] * 2))
    assert torch.equal(prefix_weights(4, 2, 6, "linear"), torch.tensor([1.0] * 4 + [0.0] * 2))
    with pytest.raises(ValueError, match="schedule"):
        prefix_weights(1, 4, 8, "cosine")


def test_leftover_is_zero_padded_and_the_padding_never_weighted():
    leftover = torch.full((1, 3, 6), 0.5)
    padded, valid = pad_leftover(leftover, chunk_size=8, action_dim=8)
    assert padded.shape == valid.shape == (1, 8, 8)
    assert torch.equal(padded[:, :3, :6], leftover) and padded[:, 3:].abs().sum() == 0
    assert padded[:, :, 6:].abs().sum() == 0
    _, weights = RTCGuidance(execution_horizon=6).target_and_weights(leftover, 2, 8, 8)
    assert torch.equal(weights[0, :2, :6], torch.ones(2, 6))
    assert 0 < weights[0, 2, 0] < 1  # decaying where the leftover still has a value
    assert weights[0, 3:].abs().sum() == 0 and weights[0, :, 6:].abs().sum() == 0  # none past its end


def test_guidance_weight_follows_the_paper_and_is_capped():
    assert guidance_weight(1.0, 10.0) == 10.0  # pure noise: (1 − τ)/τ is infinite, the cap holds
    assert guidance_weight(0.75, 10.0) == pytest.approx(10 / 3)  # τ = 1/4: 1/3 · 10
    assert guidance_weight(0.5, 10.0) == pytest.approx(2.0)  # τ = 1/2: 1 · 2, the minimum
    assert guidance_weight(0.25, 10.0) == pytest.approx(10 / 3)  # τ = 3/4: r² shrinks towards the data
    assert guidance_weight(0.9, 3.0) == 3.0 and guidance_weight(0.01, 10.0) == 10.0


def test_guided_velocity_is_the_vector_jacobian_product_through_the_denoised_estimate():
    torch.manual_seed(0)
    matrix = torch.randn(4, 4)
    x = torch.randn(1, 3, 4)
    target = torch.randn(1, 3, 4)
    weights = torch.rand(1, 3, 1)

    def velocity(x_t):  # x̂ = x − t·v = x_t @ matrix at t = 0.5
        return (x_t - x_t @ matrix) / 0.5

    with torch.no_grad():  # the gradient is taken inside even when the caller disabled them
        guided = RTCGuidance(max_guidance_weight=10.0, jacobian="vjp").guided_velocity(x, 0.5, velocity, target, weights)
    error = (target - x @ matrix) * weights
    expected = velocity(x) - guidance_weight(0.5, 10.0) * error @ matrix.T
    torch.testing.assert_close(guided, expected)
    identity = RTCGuidance(jacobian="identity").guided_velocity(x, 0.5, velocity, target, weights)
    torch.testing.assert_close(identity, velocity(x) - 2.0 * error)


# ----- guided sampling on a trained tiny model --------------------------------------------------------------------

SIZES = {"cameras": 0, "outlier_exposure_fraction": 0.0, "expert_dim": 32, "n_expert_layers": 1}


def wave_chunks(state: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """A family of chunks the observation does not decide: the phase is hidden, so samples differ."""
    steps = torch.arange(CHUNK, dtype=torch.float32)[None, :, None]
    joints = torch.arange(ACTION_DIM, dtype=torch.float32)[None, None, :]
    return 0.5 * state[:, None, :] + torch.sin(2 * math.pi * steps / CHUNK + phase[:, None, None] + 0.4 * joints)


def model_inputs(config, state: torch.Tensor) -> dict:
    preprocessor, _ = make_flow_vla_pre_post_processors(config, dataset_stats=None)
    tokens = preprocessor(make_raw_batch(config, batch_size=1))
    n = state.shape[0]
    return {
        "observation.state": state,
        OBS_LANGUAGE_TOKENS: tokens[OBS_LANGUAGE_TOKENS].expand(n, -1),
        OBS_LANGUAGE_ATTENTION_MASK: tokens[OBS_LANGUAGE_ATTENTION_MASK].expand(n, -1),
    }


def train_on_waves(steps: int = 150, **overrides) -> FlowVLAPolicy:
    torch.manual_seed(0)
    policy = FlowVLAPolicy(make_tiny_config(**{**SIZES, **overrides}))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=2e-3)
    policy.train()
    for _ in range(steps):
        state = torch.randn(32, ACTION_DIM)
        batch = model_inputs(policy.config, state)
        batch["action"] = wave_chunks(state, torch.rand(32) * 2 * math.pi)
        loss, _ = policy.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return policy.eval()


@pytest.fixture(scope="module")
def wave_policy() -> FlowVLAPolicy:
    return train_on_waves()


def wave_request(policy, n: int = 64, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    state = torch.randn(n, ACTION_DIM, generator=generator)
    leftover = wave_chunks(state, torch.rand(n, generator=generator) * 2 * math.pi)[:, : CHUNK - 2]
    noise = torch.randn(n, CHUNK, policy.config.max_action_dim, generator=generator)
    return model_inputs(policy.config, state), leftover, noise


def test_without_a_leftover_the_chunk_is_unchanged(wave_policy):
    batch, _, noise = wave_request(wave_policy, n=4)
    plain = wave_policy.predict_action_chunk(batch, noise=noise)
    assert torch.equal(wave_policy.predict_action_chunk(batch, noise=noise, inference_delay=3), plain)
    assert torch.equal(
        wave_policy.predict_action_chunk(batch, noise=noise, inference_delay=3, prev_chunk_left_over=None), plain
    )


@pytest.mark.parametrize("jacobian", ["vjp", "identity"])
def test_guidance_makes_the_delayed_actions_follow_the_leftover(wave_policy, jacobian):
    default = wave_policy.config.rtc_guidance_jacobian
    wave_policy.config.rtc_guidance_jacobian = jacobian
    batch, leftover, noise = wave_request(wave_policy)
    delay = 2
    free = wave_policy.predict_action_chunk(batch, noise=noise, num_steps=4)
    guided = wave_policy.predict_action_chunk(
        batch, noise=noise, num_steps=4, inference_delay=delay, prev_chunk_left_over=leftover, execution_horizon=5
    )
    wave_policy.config.rtc_guidance_jacobian = default
    assert guided.shape == free.shape == (64, CHUNK, ACTION_DIM)
    error_free = (free[:, :delay] - leftover[:, :delay]).abs().mean()
    error_guided = (guided[:, :delay] - leftover[:, :delay]).abs().mean()
    assert error_guided < 0.5 * error_free
    # The guidance pins only the first steps, yet the model keeps the rest of the chunk coherent with them: the
    # new chunk continues the previous one's wave past the delay as well (what makes the boundary smooth).
    later = slice(delay, leftover.shape[1])
    assert (guided[:, later] - leftover[:, later]).abs().mean() < 0.5 * (free[:, later] - leftover[:, later]).abs().mean()


def test_a_single_guided_step_lands_on_the_leftover_instead_of_overshooting(wave_policy):
    batch, leftover, noise = wave_request(wave_policy)
    free = wave_policy.predict_action_chunk(batch, noise=noise, num_steps=1)
    guided = wave_policy.predict_action_chunk(
        batch, noise=noise, num_steps=1, inference_delay=2, prev_chunk_left_over=leftover
    )
    torch.testing.assert_close(guided[:, :2], leftover[:, :2])  # weight 1 there, the last step capped at 1/dt
    boundary_free = (free[:, 2] - leftover[:, 2]).abs().mean()
    assert (guided[:, 2] - leftover[:, 2]).abs().mean() < 0.5 * boundary_free


def test_lerobot_rtc_callers_drive_the_guidance_through_their_interface(wave_policy):
    """What LeRobot 0.6's rollout does with an RTC policy: check supports_rtc() and that predict_action_chunk binds
    (batch, inference_delay=, prev_chunk_left_over=), set config.rtc_config, call init_rtc_processor(), then pass
    one observation's leftover as a 2-D (steps, action_dim) tensor held at its last action up to the horizon."""
    import inspect

    from lerobot.policies.rtc.configuration_rtc import RTCConfig

    assert wave_policy.supports_rtc()
    inspect.signature(wave_policy.predict_action_chunk).bind(object(), inference_delay=0, prev_chunk_left_over=None)
    batch, leftover, noise = wave_request(wave_policy, n=1)
    steps = wave_policy.config.num_inference_steps
    try:
        wave_policy.config.rtc_config = RTCConfig(enabled=True, execution_horizon=CHUNK, max_guidance_weight=5.0)
        assert wave_policy.init_rtc_processor().execution_horizon == CHUNK
        wave_policy.config.num_inference_steps = 1  # one step lands exactly on the leftover where its weight is 1
        held = torch.cat([leftover[0], leftover[0, -1:].expand(2, -1)])  # LeRobot pads by holding the last action
        torch.manual_seed(0)
        guided = wave_policy.predict_action_chunk(batch, inference_delay=2, prev_chunk_left_over=held)
    finally:
        wave_policy.config.rtc_config = None
        wave_policy.config.num_inference_steps = steps
    assert wave_policy.rtc_processor.max_guidance_weight == 5.0
    torch.testing.assert_close(guided[0, :2], held[:2])


def test_a_legacy_rtc_config_still_sets_the_guidance(tiny_config):
    from lerobot.configs.types import RTCAttentionSchedule
    from lerobot.policies.rtc.configuration_rtc import RTCConfig

    tiny_config.rtc_config = RTCConfig(
        execution_horizon=5, max_guidance_weight=3.0, prefix_attention_schedule=RTCAttentionSchedule.EXP
    )
    guidance = rtc_guidance_from_config(tiny_config)
    assert (guidance.execution_horizon, guidance.max_guidance_weight, guidance.prefix_schedule) == (5, 3.0, "exp")
    tiny_config.rtc_config = None
    assert rtc_guidance_from_config(tiny_config) == RTCGuidance(10, 10.0, "linear", "identity")


# ----- training-time prefix conditioning --------------------------------------------------------------------------


def test_prefix_conditioning_feeds_clean_actions_and_masks_their_loss(monkeypatch):
    config = make_tiny_config(**SIZES, rtc_training_max_delay=3, shortcut_fraction=0.0)
    policy = FlowVLAPolicy(config).eval()
    state = torch.randn(4, ACTION_DIM)
    actions = torch.nn.functional.pad(wave_chunks(state, torch.zeros(4)), (0, config.max_action_dim - ACTION_DIM))
    mask = policy.loss_mask({}, actions)
    delay = torch.tensor([0, 1, 3, 2])
    seen = {}

    def expert(x_t, time, step_size, cache, valid_steps=None, prefix_steps=None):
        # A perfect clean-action estimate everywhere except a huge error on the given steps.
        seen["x_t"], seen["prefix_steps"] = x_t, prefix_steps
        return actions + 100.0 * prefix_steps[:, :, None].float()

    monkeypatch.setattr(policy.model.expert, "forward", expert)
    loss, _ = policy.model.loss(model_inputs(config, state), actions, mask, prefix_delay=delay)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    given = seen["prefix_steps"]
    assert given.sum(dim=1).tolist() == delay.tolist()
    torch.testing.assert_close(seen["x_t"][given], actions[given])  # the given steps are the clean actions
    unmasked, _ = policy.model.loss(model_inputs(config, state), actions, mask, prefix_delay=torch.zeros(4).long())
    assert unmasked.item() == pytest.approx(0.0, abs=1e-10)  # no prefix: no step is flagged, none is wrong


def test_default_training_has_no_prefix_and_old_state_dicts_fit():
    policy = FlowVLAPolicy(make_tiny_config(**SIZES))
    assert policy.model.expert.prefix_embedding is None
    assert not any("prefix_embedding" in name for name in policy.state_dict())


def test_a_prefix_trained_checkpoint_loads_and_continues_the_leftover(tmp_path):
    policy = train_on_waves(steps=40, rtc_training_max_delay=2)
    policy.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["rtc_training_max_delay"] == 2
    loaded = FlowVLAPolicy.from_pretrained(tmp_path)
    assert loaded.config.rtc_training_max_delay == 2
    torch.testing.assert_close(loaded.model.expert.prefix_embedding, policy.model.expert.prefix_embedding)
    batch, leftover, noise = wave_request(loaded, n=8)
    chunk = loaded.predict_action_chunk(batch, noise=noise, inference_delay=4, prev_chunk_left_over=leftover)
    assert chunk.shape == (8, CHUNK, ACTION_DIM) and torch.isfinite(chunk).all()
    # Delays above the trained maximum are clipped to it: the first 2 actions are the leftover's.
    torch.testing.assert_close(chunk[:, :2], leftover[:, :2])
    assert not torch.allclose(chunk[:, 2], leftover[:, 2])
    torch.testing.assert_close(
        loaded.predict_action_chunk(batch, noise=noise), policy.predict_action_chunk(batch, noise=noise)
    )


def test_a_checkpoint_saved_before_the_rtc_fields_loads_with_their_defaults(tmp_path, tiny_config):
    FlowVLAPolicy(tiny_config).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    for key in [key for key in config if key.startswith("rtc_") and key != "rtc_config"]:
        del config[key]
    path.write_text(json.dumps(config))
    loaded = FlowVLAPolicy.from_pretrained(tmp_path)
    assert loaded.config.rtc_training_max_delay == 0 and loaded.config.rtc_prefix_schedule == "linear"
    assert loaded.model.expert.prefix_embedding is None
