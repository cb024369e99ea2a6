"""LeRobot finds the plugin with no extra flag, and discovery stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent

_DISCOVER = """
import json, sys
from lerobot.utils.import_utils import register_third_party_plugins
register_third_party_plugins()
from lerobot.robots.config import RobotConfig
from lerobot.teleoperators.config import TeleoperatorConfig
from lerobot.cameras.configs import CameraConfig
from lerobot.configs.policies import PreTrainedConfig
def ours(registry):
    return sorted(n for n, c in registry.get_known_choices().items() if c.__module__.startswith("lerobot_vla_plugin"))
print(json.dumps({
    "imported": "lerobot_robot_vla_plugin" in sys.modules,
    "heavy": [m for m in sys.modules if m == "mujoco" or m.startswith("lerobot_vla_plugin") and "modeling" in m],
    "robots": ours(RobotConfig), "teleoperators": ours(TeleoperatorConfig), "cameras": ours(CameraConfig),
    "policies": ours(PreTrainedConfig),
}))
"""


def _discover() -> dict:
    out = subprocess.run([sys.executable, "-c", _DISCOVER], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_lerobot_plugin_discovery_imports_our_registration_package_and_nothing_heavy():
    found = _discover()
    assert found["imported"], "register_third_party_plugins() did not import lerobot_robot_vla_plugin"
    assert found["heavy"] == [], f"discovery imported heavy modules: {found['heavy']}"
    assert "flow_vla" in found["policies"]


def test_every_registered_type_is_listed_by_the_stock_commands():
    """`--help` lists our types: the draccus choices exist before argument parsing. lerobot-record's help names every
    kind (robots, teleoperators, policies); lerobot-eval is the one stock command no other test runs with our types
    (calibrate, teleoperate, record, replay and train run them in tests/arms/test_lerobot_commands.py,
    tests/workflow/test_stock_*.py and tests/policy/test_lerobot_train.py)."""
    found = _discover()
    commands = {
        "lerobot-record": found["robots"] + found["teleoperators"] + found["policies"],
        "lerobot-eval": found["policies"],
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    running = {cmd: subprocess.Popen([str(BIN / cmd), "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=env) for cmd in commands}
    for cmd, proc in running.items():
        text, _ = proc.communicate(timeout=240)
        missing = [t for t in commands[cmd] if t not in text]
        assert not missing, f"{cmd} --help does not list {missing}"


def test_lerobot_vla_help_lists_its_subcommands():
    out = subprocess.run([str(BIN / "lerobot-vla"), "--help"], capture_output=True, text=True, check=True).stdout
    for sub in ("emulate", "bench"):
        assert sub in out
    bench = subprocess.run([str(BIN / "lerobot-vla"), "bench", "--help"], capture_output=True, text=True,
                           check=True).stdout
    for name in ("bus", "startup"):
        assert name in bench
