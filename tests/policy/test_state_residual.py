"""flow_vla with state_residual: the clean chunk is predicted relative to the current state."""

from __future__ import annotations

import pytest
import torch

from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import make_flow_vla_pre_post_processors

from .conftest import ACTION_DIM, make_raw_batch, make_tiny_config


def preprocessed(config):
    preprocessor, _ = make_flow_vla_pre_post_processors(config, dataset_stats=None)
    return preprocessor(make_raw_batch(config))


def test_untrained_policy_holds_the_current_state():
    torch.manual_seed(0)
    config = make_tiny_config(state_residual=True)
    policy = FlowVLAPolicy(config)
    batch = preprocessed(config)
    chunk = policy.predict_action_chunk(batch)
    state = batch["observation.state"][:, None, :ACTION_DIM].expand_as(chunk)
    torch.testing.assert_close(chunk, state)
    # Several samples of one observation agree: nothing depends on the noise yet.
    assert policy.action_uncertainty(batch, num_samples=3, num_steps=2).abs().max() < 1e-5


def test_training_moves_the_prediction_away_from_the_state():
    torch.manual_seed(0)
    config = make_tiny_config(state_residual=True, shortcut_fraction=0.0, outlier_exposure_fraction=0.0)
    policy = FlowVLAPolicy(config)
    batch = preprocessed(config)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    policy.train()
    losses = []
    for _ in range(40):
        loss, _ = policy.forward(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    missing = [name for name, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5


def test_state_residual_needs_the_clean_action_parametrization():
    with pytest.raises(ValueError, match="clean_action"):
        make_tiny_config(state_residual=True, parametrization="velocity")


def test_outlier_exposure_leaves_the_state_alone_when_it_feeds_the_chunk():
    """A displaced state would pass straight into the predicted chunk; only the cameras are corrupted then."""
    from lerobot_vla_plugin.policies.flow_vla import modeling_flow_vla

    config = make_tiny_config(state_residual=True, outlier_exposure_fraction=0.4)
    policy = FlowVLAPolicy(config)
    batch = preprocessed(config)
    seen = []
    real = modeling_flow_vla.corrupt_observations

    def spy(batch, count, displace_state=True):
        corrupted = real(batch, count, displace_state)
        seen.append(torch.equal(corrupted["observation.state"], batch["observation.state"]))
        return corrupted

    modeling_flow_vla.corrupt_observations = spy
    try:
        policy.train()
        policy.forward(batch)
    finally:
        modeling_flow_vla.corrupt_observations = real
    assert seen == [True]
