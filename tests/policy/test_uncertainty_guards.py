"""The uncertainty gate fails safe: a config that cannot measure spread is refused, and a score that is not a
number hands control over instead of silently never doing so."""

from __future__ import annotations

import pytest
import torch

from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy
from lerobot_vla_plugin.policies.flow_vla.processor_flow_vla import make_flow_vla_pre_post_processors
from lerobot_vla_plugin.policies.flow_vla.uncertainty import calibrate_uncertainty_threshold

from .conftest import make_raw_batch, make_tiny_config


@pytest.mark.parametrize("num_samples", [0, 1])
def test_a_single_uncertainty_sample_is_refused_naming_the_field(num_samples):
    with pytest.raises(ValueError, match="uncertainty_num_samples must be >= 2"):
        make_tiny_config(uncertainty_num_samples=num_samples)


def test_a_non_finite_threshold_is_refused():
    with pytest.raises(ValueError, match="uncertainty_threshold must be a finite number"):
        make_tiny_config(uncertainty_threshold=float("nan"))


def _policy_and_batch_with_a_broken_state_reading():
    torch.manual_seed(0)
    config = make_tiny_config()
    policy = FlowVLAPolicy(config)
    preprocessor, _ = make_flow_vla_pre_post_processors(config, dataset_stats=None)
    raw = make_raw_batch(config, batch_size=3)
    raw["observation.state"][1] = float("nan")  # e.g. a dropped sensor reading
    return policy, preprocessor(raw)


def test_an_observation_scoring_nan_counts_as_uncertain():
    policy, batch = _policy_and_batch_with_a_broken_state_reading()
    scores = policy.action_uncertainty(batch, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(scores[1]) and torch.isfinite(scores[[0, 2]]).all()
    policy.config.uncertainty_threshold = float(scores[[0, 2]].max()) + 1.0  # the finite scores stay below
    assert policy.is_uncertain(batch, generator=torch.Generator().manual_seed(0)).tolist() == [False, True, False]


def test_calibration_refuses_held_out_scores_that_are_not_finite():
    policy, batch = _policy_and_batch_with_a_broken_state_reading()
    with pytest.raises(ValueError, match="1 of 3 held-out observations score NaN/inf"):
        calibrate_uncertainty_threshold(policy, [batch])
    assert policy.config.uncertainty_threshold is None
