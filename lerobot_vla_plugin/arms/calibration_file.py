"""Where a device's calibration file is and the stock command that creates it, said the same way everywhere.

LeRobot keys calibration by `--robot.id` / `--teleop.id` under a per-type folder; a missing file otherwise
surfaces as a calibration prompt that a non-interactive command answers with EOFError.
"""

from __future__ import annotations

from pathlib import Path


def calibrate_command(kind: str, config) -> str:
    """`lerobot-calibrate ...` for this device; `kind` is "robot" or "teleop"."""
    parts = [f"--{kind}.type={config.type}", f"--{kind}.port={config.port}", f"--{kind}.id={config.id}"]
    if getattr(config, "calibration_dir", None):
        parts.append(f"--{kind}.calibration_dir={config.calibration_dir}")
    return "lerobot-calibrate " + " ".join(parts)


def missing_calibration_message(kind: str, device) -> str | None:
    """One line naming the missing file and how to create it, or None when the file is there (or the device
    keeps no calibration file)."""
    path = getattr(device, "calibration_fpath", None)
    if path is None or not hasattr(device, "bus") or Path(path).is_file():
        return None
    role = "robot" if kind == "robot" else "teleoperator"
    return (f"The {role} {device.config.type} (id {device.config.id!r}) has no calibration file: looked for {path}. "
            f"Create it with `{calibrate_command(kind, device.config)}` (or pass the --{kind}.id / "
            f"--{kind}.calibration_dir it was calibrated with).")
