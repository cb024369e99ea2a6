"""LeRobot-style device arguments (`--robot.type=… --robot.port=…` or `--teleop.…`) for `lerobot-vla` commands.

`lerobot-vla` is an argparse program, but its arm commands should take exactly the arguments users already
type for `lerobot-calibrate`. The subcommand's parser hands every argument it does not know to draccus, which
parses them into LeRobot's robot/teleoperator config classes (ours and LeRobot's built-ins alike).
"""

from __future__ import annotations

import argparse


def accept_device_arguments(parser: argparse.ArgumentParser) -> None:
    """Collect unknown `--robot.*` / `--teleop.*` arguments into `args.device_args` instead of failing."""
    parser.set_defaults(device_args=[])
    parser.epilog = ("Device arguments as for lerobot-calibrate: --robot.type=TYPE --robot.port=PORT "
                     "[--robot.id=ID ...] or --teleop.type=TYPE --teleop.port=PORT [--teleop.id=ID ...]")
    parse_known_args = parser.parse_known_args

    def parse_known_args_keeping_device_arguments(args=None, namespace=None):
        namespace, rest = parse_known_args(args, namespace)
        device, other, i = [], [], 0
        while i < len(rest):
            arg = rest[i]
            if not arg.startswith(("--robot.", "--teleop.")):
                other.append(arg)
            elif "=" not in arg and i + 1 < len(rest) and not rest[i + 1].startswith("--"):
                device.append(f"{arg}={rest[i + 1]}")  # `--robot.port /dev/x`
                i += 1
            else:
                device.append(arg)
            i += 1
        namespace.device_args = list(namespace.device_args) + device
        return namespace, other

    parser.parse_known_args = parse_known_args_keeping_device_arguments


def parse_device_config(device_args: list[str]):
    """Return ("robot" | "teleop", config) from LeRobot-style arguments; exactly one device must be given.

    Only the chosen config class is handed to draccus: building a parser for every registered choice (as the
    stock commands do) costs seconds of docstring extraction.
    """
    from lerobot.robots.config import RobotConfig
    from lerobot.teleoperators.config import TeleoperatorConfig

    import lerobot.cameras.opencv.configuration_opencv  # noqa: F401 - camera types, as the stock commands import
    import lerobot.cameras.realsense.configuration_realsense  # noqa: F401
    import lerobot_robot_vla_plugin  # noqa: F401 - registers our types, as LeRobot's plugin discovery does
    from lerobot_vla_plugin.options import parse_options

    args = list(device_args)
    kinds = sorted({a.split(".", 1)[0][2:] for a in args if a.startswith(("--robot.", "--teleop."))})
    if not kinds:
        raise SystemExit("error: give the device, e.g. --robot.type=vla_so101_follower --robot.port=/dev/ttyACM0 "
                         "(or --teleop.type=vla_so101_leader --teleop.port=...)")
    if len(kinds) > 1:
        raise SystemExit("error: give either --robot.* or --teleop.* arguments, not both (run the command once per arm)")
    kind = kinds[0]
    registry = RobotConfig if kind == "robot" else TeleoperatorConfig
    own = [a for a in args if a.startswith(f"--{kind}.")]
    types = [a.split("=", 1)[1] for a in own if a.startswith(f"--{kind}.type=")]
    if len(types) != 1:
        raise SystemExit(f"error: give exactly one --{kind}.type=TYPE")
    try:
        config_class = registry.get_choice_class(types[0])
    except KeyError:
        known = ", ".join(sorted(registry.get_known_choices()))
        raise SystemExit(f"error: unknown --{kind}.type={types[0]}; known types: {known}") from None
    rest = ["--" + a[len(f"--{kind}."):] for a in own if not a.startswith(f"--{kind}.type=")]
    return kind, parse_options(config_class, rest)


def make_device(kind: str, config):
    if kind == "robot":
        from lerobot.robots.utils import make_robot_from_config

        return make_robot_from_config(config)
    from lerobot.teleoperators.utils import make_teleoperator_from_config

    return make_teleoperator_from_config(config)
