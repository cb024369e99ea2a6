"""flow_vla is found through LeRobot's own factories once the registration package is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.factory import (
    get_policy_class,
    make_policy_config,
    make_pre_post_processors,
)

from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

from .conftest import make_tiny_config


def test_lerobot_factories_resolve_flow_vla():
    config = make_policy_config("flow_vla", device="cpu")
    assert isinstance(config, FlowVLAConfig)
    assert config.type == "flow_vla"
    assert config.chunk_size == 50
    assert tuple(config.image_size) == (96, 128)
    assert "flow_vla" in PreTrainedConfig.get_known_choices()

    policy_class = get_policy_class("flow_vla")
    assert policy_class.__name__ == "FlowVLAPolicy"
    assert policy_class.__module__ == "lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla"


def test_lerobot_builds_processors_with_the_steps_it_overrides_by_name():
    preprocessor, postprocessor = make_pre_post_processors(make_tiny_config(), dataset_stats=None)
    pre_names = [step._registry_name for step in preprocessor.steps]
    post_names = [step._registry_name for step in postprocessor.steps]
    for required in ("rename_observations_processor", "device_processor", "normalizer_processor"):
        assert required in pre_names
    assert "flow_vla_tokenizer" in pre_names
    assert post_names == ["unnormalizer_processor", "device_processor"]


def test_importing_the_config_loads_no_model_code():
    code = (
        "import sys, lerobot_robot_vla_plugin;"
        "from lerobot.configs.policies import PreTrainedConfig;"
        "assert 'flow_vla' in PreTrainedConfig.get_known_choices();"
        "loaded = [m for m in sys.modules if m.startswith('lerobot_vla_plugin.policies.flow_vla.')];"
        "print(sorted(loaded))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla']"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_action_steps": 60}, "n_action_steps"),
        ({"backbone": "huge"}, "backbone must be"),
        ({"backbone": "pretrained"}, "pretrained_backbone"),
        ({"max_shortcut_steps": 6}, "power of two"),
        ({"tokenizer_name": "bert-base-uncased"}, "tokenizer_name must be 'bytes'"),
        ({"parametrization": "epsilon"}, "parametrization must be"),
    ],
)
def test_invalid_configs_name_the_problem(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_tiny_config(**overrides)


def test_features_that_do_not_fit_name_the_fix():
    with pytest.raises(ValueError, match="--policy.max_action_dim=12"):
        make_tiny_config(action_dim=12).validate_features()
    with pytest.raises(ValueError, match="--policy.max_cameras=4"):
        make_tiny_config(cameras=4).validate_features()
