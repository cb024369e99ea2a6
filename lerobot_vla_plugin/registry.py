"""The one list of config modules that register our types into LeRobot.

Each module below defines draccus-registered config classes only (robots, teleoperators, cameras, the
policy). Keep this list free of modules that import torch model code or MuJoCo: LeRobot imports it on
every `lerobot-*` start-up. A test asserts that importing it leaves `mujoco` and our model modules unloaded.
"""

import importlib

CONFIG_MODULES: tuple[str, ...] = (
    # Filled in as the arms, cameras and policy land; each entry is a config-only module.
    "lerobot_vla_plugin.policies.flow_vla.configuration_flow_vla",
    "lerobot_vla_plugin.robots.so_follower.config_so_follower", "lerobot_vla_plugin.robots.koch_follower.config_koch_follower", "lerobot_vla_plugin.teleoperators.so_leader.config_so_leader", "lerobot_vla_plugin.teleoperators.koch_leader.config_koch_leader",
    "lerobot_vla_plugin.cameras.config_virtual_camera",
)


def register_all() -> None:
    for module_name in CONFIG_MODULES:
        importlib.import_module(module_name)
