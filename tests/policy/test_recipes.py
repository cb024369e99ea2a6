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
