"""Errors a servo bus raises. Each message names the servo, the port and what to do about it.

They subclass the exceptions LeRobot's own code catches (ConnectionError, RuntimeError), so LeRobot's robots,
scripts and calibration flow keep working on top of our buses.
"""

from __future__ import annotations


class PortUnavailableError(ConnectionError):
    """The serial port cannot be opened (missing, no permission, held by another program)."""


class ServoNotRespondingError(ConnectionError):
    """A servo stayed silent (or only sent corrupt packets) through every retry."""

    def __init__(self, *, motors: dict[int, str], port: str, baudrate: int, tries: int, what: str,
                 corrupt_packets: int = 0, timeout_ms: float | None = None, emulated: bool = False):
        self.motors = motors
        self.port = port
        self.baudrate = baudrate
        self.tries = tries
        self.emulated = emulated
        names = ", ".join(f"'{name}' (id {servo_id})" for servo_id, name in motors.items())
        corrupt = f" and {corrupt_packets} corrupt packets were discarded" if corrupt_packets else ""
        waited = f" (waited {timeout_ms:.0f} ms each)" if timeout_ms is not None else ""
        if emulated:
            advice = (
                f"{port} is a pseudo-terminal, so the servo emulator answers there, not hardware: check that the "
                "emulator (`lerobot-vla emulate`, or the virtual arm of this command) is still running and serves "
                "this id. On a heavily loaded machine it may answer late: give the bus more time with "
                "LEROBOT_VLA_BUS_TIMEOUT_MS (milliseconds)."
            )
        else:
            advice = (
                "Check that the servo is powered and its cable is seated, that its id and baud rate were set "
                "(`lerobot-vla setup-motors`), and run `lerobot-vla doctor` for a full check."
            )
        super().__init__(
            f"No valid reply from servo {names} to {what} on port {port} at "
            f"{baudrate} baud after {tries} tries{waited}{corrupt}. {advice}"
        )


class ServoStatusError(RuntimeError):
    """A servo answered but reported error bits (overload, overheat, voltage, ...)."""

    def __init__(self, *, motor: str, servo_id: int, errors: list[str], port: str, what: str):
        self.motor = motor
        self.servo_id = servo_id
        self.errors = errors
        super().__init__(
            f"Servo '{motor}' (id {servo_id}) on {port} reported {', '.join(errors)} during {what}. "
            + _ERROR_ADVICE.get(errors[0].split(" ")[0], "Power-cycle the arm and check the servo.")
        )


_ERROR_ADVICE = {
    "voltage": "The supply voltage is outside the servo's limits: check the power supply matches the servo "
    "variant (7.4 V servos on 5 V, 12 V servos on 12 V).",
    "overheat": "Let the servo cool down and reduce the load it holds (or its torque limit).",
    "overload": "The joint is blocked or carries too much load: free it, then power-cycle or reboot the servo.",
    "overcurrent": "The motor drew too much current: check for a blocked joint or a short.",
    "angle": "The magnetic encoder reports a fault: the servo may need replacement.",
    "access": "EEPROM registers (Dynamixel addresses below 64) can only be written with torque off: disable "
    "torque first. Read-only registers cannot be written at all.",
    "data": "The value is outside what the register accepts: check the value and the servo model's limits.",
}
