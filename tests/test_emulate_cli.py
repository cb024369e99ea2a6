"""`lerobot-vla emulate` serves a bus another process can use, and `bench bus` runs end to end."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from conftest import calibration, koch_motors, so_motors

BIN = Path(sys.executable).parent


def _serve(arm: str, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([str(BIN / "lerobot-vla"), "emulate", "--arm", arm, *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    port = proc.stdout.readline().strip()
    assert port.startswith("/dev/"), proc.stderr.read()
    return proc, port


def test_emulate_prints_a_port_that_our_bus_can_drive_until_sigterm():
    from lerobot_vla_plugin.motors.feetech.bus import FeetechBus

    proc, port = _serve("so101", "--timing")
    try:
        bus = FeetechBus(port, so_motors(), calibration())
        bus.connect()
        assert set(bus.sync_read("Present_Position", normalize=False).values()) == {2048}
        bus.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert not Path(port).exists()


def test_emulate_dynamixel_arm_and_protocol_check():
    from lerobot_vla_plugin.motors.dynamixel.bus import DynamixelBus

    proc, port = _serve("koch-leader", "--protocol", "dynamixel")
    try:
        motors = {name: type(m)(m.id, "xl330-m077", m.norm_mode) for name, m in koch_motors().items()}
        bus = DynamixelBus(port, motors, calibration())
        bus.connect()
        assert bus.ping("gripper") == 1190
        bus.disconnect()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    wrong = subprocess.run([str(BIN / "lerobot-vla"), "emulate", "--arm", "so101", "--protocol", "dynamixel"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "feetech" in wrong.stderr


def test_bench_bus_runs_and_prints_ratios():
    run = subprocess.run([str(BIN / "lerobot-vla"), "bench", "bus", "--protocol", "feetech", "--iterations", "30",
                          "--iterations-timed", "10"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "sync_read" in out and "tick" in out and "speed-up" in out
    assert out.count("feetech") >= 6  # 3 operations x timing off/on
