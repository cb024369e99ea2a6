"""flow_vla's state dropout: in training a share of the samples sees the mean state, in acting never."""

from __future__ import annotations

import pytest
import torch

from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import make_flow_vla_pre_post_processors

from .conftest import make_raw_batch, make_tiny_config


def test_a_share_of_training_samples_sees_the_mean_state_and_the_rest_their_own():
    torch.manual_seed(0)
    policy = FlowVLAPolicy(make_tiny_config(state_dropout=0.5))
    state = torch.randn(2000, policy.config.max_state_dim) + 3.0  # no row is zero by chance
    policy.train()
    dropped = policy.model.drop_state(state)
    zero_rows = (dropped == 0).all(dim=1)
    assert 0.44 < zero_rows.float().mean().item() < 0.56
    torch.testing.assert_close(dropped[~zero_rows], state[~zero_rows])
    policy.eval()
    torch.testing.assert_close(policy.model.drop_state(state), state)


def test_the_prefix_sees_the_dropped_state_and_the_residual_offset_the_real_one():
    """With state_residual the chunk is an offset of the real state: dropping it there would break "hold the pose"."""
    torch.manual_seed(0)
    config = make_tiny_config(state_dropout=0.9, state_residual=True, outlier_exposure_fraction=0.0)
    policy = FlowVLAPolicy(config)
    preprocessor, _ = make_flow_vla_pre_post_processors(config, dataset_stats=None)
    batch = preprocessor(make_raw_batch(config, batch_size=64))
    seen = {}
    encoder = policy.model.prefix_encoder
    real_forward = encoder.forward

    def spy(images, tokens, attention_mask, state):
        seen["prefix_state"] = state
        return real_forward(images, tokens, attention_mask, state)

    encoder.forward = spy
    policy.train()
    state = policy.model.encode_scene(batch).state
    assert (seen["prefix_state"] == 0).all(dim=1).sum() > 40  # about 90 % of 64
    assert not (state[:, : batch["observation.state"].shape[1]] == 0).all(dim=1).any()


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_state_dropout_must_leave_some_samples_their_state(share):
    with pytest.raises(ValueError, match="state_dropout"):
        make_tiny_config(state_dropout=share)
