"""`lerobot-vla doctor`: preflight checks of one arm, one line each (ok / warn / FAIL and the fix).

What it looks for are the failures users hit most before anything moves: a port that is missing or not
accessible, a servo that does not answer or is the wrong model, mixed firmware, a supply that does not fit
the servo variant (a 12 V supply on 7.4 V leader servos), a calibration file that disagrees with what is
stored in the servos, a camera that cannot deliver the requested size. Nothing is moved or torqued.
Exit code 1 when any check FAILs.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

OK, WARN, FAIL = "ok", "warn", "FAIL"


@dataclass(frozen=True)
class Check:
    status: str
    name: str
    message: str
    fix: str = ""

    def line(self) -> str:
        return f"[{self.status:^4}] {self.name}: {self.message}" + (f" -> fix: {self.fix}" if self.fix else "")


DEFAULT_LINK_READS = 50
# Retries per transaction while diagnosing: more than the control loop's, so every check still gets its answer on
# a noisy link; the link check below measures and reports the loss itself.
DIAGNOSIS_NUM_RETRY = 5


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from lerobot_vla_plugin.arms.cli_args import accept_device_arguments

    accept_device_arguments(parser)
    parser.add_argument("--link-reads", type=int, default=DEFAULT_LINK_READS, metavar="N",
                        help="position reads of every servo to measure lost and corrupt replies (default "
                             f"{DEFAULT_LINK_READS}; more reads find rarer losses)")


def run(args: argparse.Namespace) -> int:
    from lerobot_vla_plugin.arms.cli_args import make_device, parse_device_config

    if args.link_reads < 1:
        raise SystemExit(f"error: --link-reads must be at least 1, got {args.link_reads}")
    kind, config = parse_device_config(args.device_args)
    device = make_device(kind, config)
    print(f"Checking {config.type} (id {config.id}) on {config.port}", flush=True)
    checks = diagnose(device, kind, config, link_reads=args.link_reads)
    for check in checks:
        print(check.line())
    failed = sum(c.status == FAIL for c in checks)
    warned = sum(c.status == WARN for c in checks)
    print(f"{len(checks)} checks: {failed} failed, {warned} warnings.")
    return 1 if failed else 0


def diagnose(device, kind: str, config, link_reads: int = DEFAULT_LINK_READS) -> list[Check]:
    checks = [_check_port(config.port)]
    if checks[-1].status == FAIL:
        return checks
    checks += _bus_checks(device, kind, config, link_reads)
    for name, camera in getattr(device, "cameras", {}).items():
        checks.append(_check_camera(name, camera, config.cameras[name]))
    return checks


def _bus_checks(device, kind: str, config, link_reads: int) -> list[Check]:
    bus = device.bus
    try:
        bus._connect(handshake=False)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        return [Check(FAIL, "port", f"cannot open {config.port}: {exc}",
                      "close other programs using the port (another lerobot command, a serial monitor)")]
    bus.num_retry = DIAGNOSIS_NUM_RETRY
    try:
        checks, answering = _check_servos(bus)
        if not answering:
            return checks + [_check_what_answers(bus)]
        checks.append(_guarded("link", _check_link, bus, answering, link_reads))
        checks.append(_guarded("firmware", _check_firmware, bus, answering))
        checks.append(_guarded("supply", _check_supply, bus, answering, "leader" if kind == "teleop" else "follower"))
        if len(answering) == len(bus.motors):
            checks.append(_guarded("calibration", _check_calibration, device, kind, config))
        else:
            checks.append(Check(WARN, "calibration", "not checked: some servos do not answer"))
        return checks
    finally:
        bus.close_port()


def _guarded(name: str, check, *args) -> Check:
    """Run one check; a bus error mid-check becomes a FAIL line, never a traceback (doctor runs when things
    are broken)."""
    try:
        return check(*args)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        first_sentence = str(exc).split(". ")[0].rstrip(".")
        return Check(FAIL, name, f"could not be checked: {type(exc).__name__}: {first_sentence}",
                     "fix the link first (see the link check)")


def _check_port(port: str) -> Check:
    if not os.path.exists(port):
        return Check(FAIL, "port", f"{port} does not exist",
                     "plug the adapter in and run `lerobot-vla find-port` to get its stable /dev/serial/by-id path")
    if not os.access(port, os.R_OK | os.W_OK):
        return Check(FAIL, "port", f"no read/write permission on {port}",
                     "`sudo usermod -aG dialout $USER`, then log out and in")
    return Check(OK, "port", f"{port} exists and is accessible")


def _check_servos(bus) -> tuple[list[Check], list[str]]:
    """Ping every expected servo; returns the check lines and the motors that answer with the right model."""
    expected = {name: (motor.id, motor.model, bus.model_number_table[motor.model]) for name, motor in bus.motors.items()}
    problems, answering = [], []
    if not bus.anything_answers():  # one broadcast window instead of a timeout per servo and retry
        ids = [i for i, _, _ in expected.values()]
        return [Check(FAIL, "servos", f"no servo answers (ids {ids}) at {bus.get_baudrate()} baud",
                      "check the arm's power and cable; see below whether another protocol or baud rate answers")], []
    found_by_motor = {name: bus.ping(name, num_retry=2) for name in expected}
    for name, (servo_id, model, number) in expected.items():
        found = found_by_motor[name]
        if found is None:
            problems.append(Check(FAIL, "servos", f"'{name}' (id {servo_id}) does not answer at {bus.get_baudrate()} "
                                                  "baud", "check its cable and power; a new servo needs "
                                                          "`lerobot-vla setup-motors` (it ships as id 1)"))
        elif found != number:
            names = {v: k for k, v in bus.model_number_table.items()}
            problems.append(Check(FAIL, "servos", f"'{name}' (id {servo_id}) is model {names.get(found, found)} "
                                                  f"({found}), expected {model} ({number})",
                                  "put the right servo at this joint, or fix its id with `lerobot-vla setup-motors`"))
        else:
            answering.append(name)
    extra = sorted(set(bus.broadcast_ping(num_retry=1) or {}) - {i for i, _, _ in expected.values()})
    if extra:
        problems.append(Check(WARN, "servos", f"unexpected servo ids {extra} answer on this bus",
                              "a servo with a duplicate or factory id (1) may be connected; set it up alone"))
    latched = {m: words for m, words in bus.status_errors.items() if words}
    if latched:
        listing = "; ".join(f"'{m}': {', '.join(w)}" for m, w in latched.items())
        problems.append(Check(WARN, "servos", f"error bits set: {listing}", "power-cycle the arm; if they come "
                                                                            "back, check load and supply"))
    if not any(c.status == FAIL for c in problems):
        problems.insert(0, Check(OK, "servos", f"ids {[i for i, _, _ in expected.values()]} answer with the "
                                               f"expected models at {bus.get_baudrate()} baud"))
    return problems, answering


def _check_what_answers(bus) -> Check:
    """Nothing answered: a broadcast PING in the other protocol and at other baud rates names the mix-up."""
    hint = bus.explain_silence()
    if hint:
        return Check(FAIL, "protocol", hint)
    return Check(FAIL, "protocol", "no servo answers in either protocol (Feetech, Dynamixel 2.0) at the usual baud "
                                   "rates", "the arm has no power or its data cable is not connected to the adapter")


LINK_FAIL_RATE = 0.05  # above this, retries run out often enough to stop a recording within minutes


def _check_link(bus, motors: list[str], reads: int) -> Check:
    from lerobot_vla_plugin.motors.link_quality import LIKELY_CAUSES, measure_link

    quality = measure_link(bus, motors, reads)
    if quality.loss_rate == 0:
        return Check(OK, "link", f"no reply lost or corrupt in {reads} position reads of {len(motors)} servos "
                                 f"at {quality.baudrate} baud")
    status = FAIL if quality.loss_rate >= LINK_FAIL_RATE or any(quality.unrecovered.values()) else WARN
    where = (f" (emulated bus: its --drop-rate/--corrupt-rate, or a machine too busy to answer within "
             f"{bus.timeout_ms:.0f} ms)" if bus.emulated else "")
    return Check(status, "link", f"{quality.summary()}{where}", "likely causes: " + "; ".join(LIKELY_CAUSES))


def _firmware_versions(bus, motors) -> dict[str, str]:
    versions = {}
    for motor in motors:
        table = bus.model_ctrl_table[bus.motors[motor].model]
        if "Firmware_Major_Version" in table:
            major = bus.read("Firmware_Major_Version", motor, normalize=False)
            minor = bus.read("Firmware_Minor_Version", motor, normalize=False)
            versions[motor] = f"{major}.{minor}"
        else:
            versions[motor] = str(bus.read("Firmware_Version", motor, normalize=False))
    return versions


def _check_firmware(bus, motors) -> Check:
    versions = _firmware_versions(bus, motors)
    by_model: dict[str, set[str]] = {}
    for motor, version in versions.items():
        by_model.setdefault(bus.motors[motor].model, set()).add(version)
    mixed = {model: found for model, found in by_model.items() if len(found) > 1}
    if mixed:
        listing = ", ".join(f"{m}={v}" for m, v in versions.items())
        return Check(FAIL, "firmware", f"servos of the same model run different firmware ({listing})",
                     "update all servos to one firmware version (Feetech FD software / Dynamixel Wizard)")
    listing = ", ".join(f"{model} {', '.join(sorted(v))}" for model, v in by_model.items())
    return Check(OK, "firmware", f"firmware agrees per model ({listing})")


def _check_supply(bus, motors, role: str) -> Check:
    from lerobot_vla_plugin.arms.definitions import supply_for

    health = bus.read_health(motors)
    wrong = []
    for motor, h in health.items():
        supply = supply_for(bus.motors[motor].model, role)
        if h.voltage_v is not None and not supply.min_v <= h.voltage_v <= supply.max_v:
            wrong.append((motor, h.voltage_v, supply))
    if wrong:
        listing = ", ".join(f"'{m}' {v:.1f} V" for m, v, _ in wrong)
        supply = wrong[0][2]
        return Check(FAIL, "supply", f"{listing} outside {supply.min_v:.1f}-{supply.max_v:.1f} V for a {role}",
                     supply.advice)
    volts = sorted({round(h.voltage_v, 1) for h in health.values() if h.voltage_v is not None})
    return Check(OK, "supply", f"{', '.join(f'{v:.1f} V' for v in volts)} fits the servos of this {role}")


def _check_calibration(device, kind: str, config) -> Check:
    from lerobot_vla_plugin.arms.calibration_file import calibrate_command

    command = calibrate_command(kind, config)
    if not device.calibration_fpath.is_file():
        return Check(WARN, "calibration", f"no calibration file {device.calibration_fpath}", f"run `{command}`")
    stored = device.bus.read_calibration()
    compare_drive_mode = not device.bus.apply_drive_mode  # Feetech keeps drive mode in software only
    differences = []
    for motor, expected in device.calibration.items():
        actual = stored.get(motor)
        fields = ("homing_offset", "range_min", "range_max") + (("drive_mode",) if compare_drive_mode else ())
        for field in fields:
            if actual is None or getattr(actual, field) != getattr(expected, field):
                differences.append(f"'{motor}' {field} file {getattr(expected, field)} vs servo "
                                   f"{None if actual is None else getattr(actual, field)}")
    if differences:
        shown = "; ".join(differences[:3]) + (f" (+{len(differences) - 3} more)" if len(differences) > 3 else "")
        return Check(FAIL, "calibration", f"{device.calibration_fpath.name} differs from the servos' EEPROM: {shown}",
                     f"run `{command}` and press ENTER to write the file to the servos (or 'c' "
                     "to recalibrate)")
    return Check(OK, "calibration", f"{device.calibration_fpath} matches the servos' EEPROM")


def _check_camera(name: str, camera, config) -> Check:
    want = (config.height, config.width, 3)
    try:
        camera.connect()
    except Exception as exc:  # noqa: BLE001
        return Check(FAIL, f"camera {name}", f"cannot open at {config.width}x{config.height} {config.fps} fps: "
                                             f"{exc}", "check the device index/path with `lerobot-find-cameras` "
                                                       "and that the camera supports this size and fps")
    try:
        frame = camera.read()
        if tuple(frame.shape) != want:
            return Check(FAIL, f"camera {name}", f"delivers {tuple(frame.shape)} instead of {want}",
                         "request a size the camera supports")
        return Check(OK, f"camera {name}", f"opens and delivers {config.width}x{config.height} at {config.fps} fps")
    except Exception as exc:  # noqa: BLE001
        return Check(FAIL, f"camera {name}", f"opened but cannot read a frame: {exc}", "check the camera's cable")
    finally:
        try:
            camera.disconnect()
        except Exception:  # noqa: BLE001, S110 - the check result is what matters here
            pass
