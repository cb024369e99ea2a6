"""Subcommands whose options are LeRobot-style (`--robot.type=...`) and parsed by draccus, not argparse."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

logger = logging.getLogger(__name__)

# LeRobot's own arms and cameras register their config types on import, as lerobot-record does.
_BUILTIN_DEVICE_CONFIG_MODULES = (
    "lerobot.cameras.opencv.configuration_opencv", "lerobot.cameras.realsense.configuration_realsense",
    "lerobot.robots.so_follower", "lerobot.robots.koch_follower", "lerobot.teleoperators.so_leader",
    "lerobot.teleoperators.koch_leader",
)


def pass_options_through(parser: argparse.ArgumentParser, dest: str) -> None:
    """Make `parser` keep every argument after the subcommand, unparsed, in `args.<dest>` for draccus."""

    def parse_known_args(args=None, namespace=None):
        namespace = namespace or argparse.Namespace()
        for key, value in parser._defaults.items():
            setattr(namespace, key, value)
        setattr(namespace, dest, list(sys.argv[2:] if args is None else args))
        return namespace, []

    parser.parse_known_args = parse_known_args


def register_config_types(*, builtin_devices: bool = False) -> None:
    """Make every config type draccus may be asked for known: plugins (ours among them) and, for commands that
    take `--robot.type` / `--teleop.type`, LeRobot's own devices."""
    from lerobot.utils.import_utils import register_third_party_plugins

    if builtin_devices:
        for module in _BUILTIN_DEVICE_CONFIG_MODULES:
            try:
                importlib.import_module(module)
            except ImportError as exc:  # an optional dependency of one device must not block the others
                logger.debug("%s not available: %s", module, exc)
    register_third_party_plugins()
    from lerobot_vla_plugin.registry import register_all

    register_all()


def split_policy_path(argv: list[str]):
    """(policy config loaded from `--policy.path` with its `--policy.*` overrides, or None; the other options),
    the way LeRobot's scripts read a pretrained policy."""
    from lerobot.configs import parser
    from lerobot.configs.policies import PreTrainedConfig

    policy_path = parser.get_path_arg("policy", argv)
    rest = parser.filter_path_args(["policy"], argv)
    if not policy_path:
        return None, rest
    policy = PreTrainedConfig.from_pretrained(policy_path, cli_overrides=parser.get_cli_overrides("policy", argv))
    policy.pretrained_path = policy_path
    return policy, rest
