"""Registration entry point that LeRobot's plugin discovery imports.

LeRobot (`register_third_party_plugins`) imports every installed distribution whose name starts with
`lerobot_robot_`; this package has that name. It imports only the *config* modules of `lerobot_vla_plugin`,
which register our robot, teleoperator, camera and policy types with draccus. Device classes, torch model
code and MuJoCo load lazily when a config is instantiated, so every `lerobot-*` command stays fast.
"""

from lerobot_vla_plugin.registry import register_all

register_all()
