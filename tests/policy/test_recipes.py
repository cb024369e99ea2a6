"""Every training recipe in recipes/ loads the way `lerobot-train --config_path=<recipe>` loads it."""

from __future__ import annotations

import json
from pathlib import Path

import draccus
import pytest
from lerobot.configs.train import TrainPipelineConfig

from lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla import FlowVLAConfig

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.json"))


def test_recipes_cover_the_demo_and_the_real_arms():
    names = {path.name for path in RECIPES}
    assert any("virtual_demo" in name for name in names)
    assert any("so100_so101" in name for name in names)
    assert any("koch" in name for name in names)
    assert any(json.loads(path.read_text())["policy"].get("backbone") == "pretrained" for path in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda path: path.stem)
def test_recipe_decodes_into_a_flow_vla_training_config(recipe):
    with draccus.config_type("json"):
        config = draccus.decode(TrainPipelineConfig, json.loads(recipe.read_text()))
    assert isinstance(config.policy, FlowVLAConfig)
    assert config.policy.push_to_hub is False
    assert config.policy.chunk_size == 50


def test_recipe_loads_like_lerobot_train_config_path_with_overrides(tmp_path):
    """The exact loader `lerobot-train --config_path` uses (slow: draccus builds the whole CLI)."""
    recipe = next(path for path in RECIPES if path.name == "so101_virtual_demo_small_cpu.json")
    config = TrainPipelineConfig.from_pretrained(
        str(recipe), cli_args=["--dataset.repo_id=local/example", f"--dataset.root={tmp_path}", "--steps=10"]
    )
    assert isinstance(config.policy, FlowVLAConfig)
    assert config.steps == 10 and config.dataset.root == str(tmp_path)


def test_the_shipped_virtual_arm_checkpoint_loads_with_lerobot_and_keeps_the_object_positions_in_metres():
    """The checkpoint the main job fine-tunes: LeRobot's loaders read its weights and processors, and the saved
    normaliser leaves the object positions alone even after lerobot-train replaces its features and stats."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_vla_plugin.policies.flow_vla.modeling_flow_vla import FlowVLAPolicy

    checkpoint = RECIPES[0].parent / "checkpoints" / "flow_vla_so101_virtual"
    config = PreTrainedConfig.from_pretrained(checkpoint)
    policy = FlowVLAPolicy.from_pretrained(checkpoint, config=config)
    assert sum(p.numel() for p in policy.parameters()) > 1_000_000
    assert set(config.image_features) == {"observation.images.front", "observation.images.wrist"}
    preprocessor, _ = make_pre_post_processors(config, pretrained_path=str(checkpoint))
    normalizer = next(step for step in preprocessor.steps if type(step).__name__ == "NormalizerProcessorStep")
    assert set(normalizer.normalize_observation_keys) == {"observation.state", *config.image_features}
