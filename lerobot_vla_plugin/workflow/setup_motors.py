"""`lerobot-vla setup-motors`: give each servo of an arm its id and the bus baud rate, one motor at a time.

LeRobot 0.4.4's `lerobot-setup-motors` only accepts a hard-coded list of its own devices; this runs the same
procedure (gripper first, one servo connected at a time) for any device whose class has `setup_motors()`.
"""

from __future__ import annotations

import argparse


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from lerobot_vla_plugin.arms.cli_args import accept_device_arguments

    accept_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from lerobot_vla_plugin.arms.cli_args import make_device, parse_device_config

    kind, config = parse_device_config(args.device_args)
    device = make_device(kind, config)
    if not hasattr(device, "setup_motors"):
        print(f"error: {config.type} has no motor setup procedure.")
        return 2
    print(f"Setting up the motors of {config.type} on {config.port}: you will connect one servo at a time.")
    try:
        device.setup_motors()
    finally:
        if device.bus.is_connected:
            device.bus.close_port()
    ids = ", ".join(f"{name}={motor.id}" for name, motor in device.bus.motors.items())
    print(f"Done: {ids} at {device.bus.default_baudrate} baud. Now run `lerobot-vla doctor --{kind}.type="
          f"{config.type} --{kind}.port={config.port}` with all servos connected.")
    return 0
