"""Servo-layer demo without hardware: a leader arm moved by a "hand" drives a follower, both on emulated buses.

Shows the pieces the rest of the workflow stands on: the pty emulator, FeetechBus with LeRobot's API, the
one-transfer control tick, health readings, and what a user sees when a servo goes silent.
"""

import math
import time

from lerobot.motors.motors_bus import Motor, MotorCalibration, MotorNormMode

from lerobot_vla_plugin.emulator.bus import EmulatedBus
from lerobot_vla_plugin.emulator.link import TimingModel
from lerobot_vla_plugin.motors.errors import ServoNotRespondingError
from lerobot_vla_plugin.motors.feetech.bus import FeetechBus

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
MOTORS = {j: Motor(i + 1, "sts3215", MotorNormMode.RANGE_0_100 if j == "gripper" else MotorNormMode.DEGREES)
          for i, j in enumerate(JOINTS)}
CALIBRATION = {j: MotorCalibration(i + 1, 0, 0, 600, 3500) for i, j in enumerate(JOINTS)}


def main() -> None:
    timing = TimingModel(enabled=True, usb_latency_s=0.001)  # 1 Mbps wire + 1 ms USB adapter latency
    with EmulatedBus.for_arm("so101-leader", timing=timing) as leader_emu, \
            EmulatedBus.for_arm("so101", timing=timing) as follower_emu:
        print(f"leader bus on {leader_emu.port}, follower bus on {follower_emu.port}")
        leader = FeetechBus(leader_emu.port, MOTORS, CALIBRATION)
        follower = FeetechBus(follower_emu.port, MOTORS, CALIBRATION)
        leader.connect()
        follower.connect()
        follower.write_calibration(CALIBRATION)
        follower.sync_write("Goal_Position", follower.sync_read("Present_Position"))  # no jump at torque-on
        follower.enable_torque()

        observation = follower.sync_read("Present_Position")
        start, ticks = time.perf_counter(), 0
        while time.perf_counter() - start < 3.0:
            t = time.perf_counter() - start
            for servo in leader_emu.servos:  # a hand moving the limp leader
                servo.actuator.hand_position_steps = 2048 + 500 * math.sin(1.5 * t + servo.id)
            action = leader.sync_read("Present_Position")
            goal = {m: min(observation[m] + 10, max(observation[m] - 10, v)) for m, v in action.items()}
            observation = follower.sync_write_read("Goal_Position", goal)  # one USB round trip per tick
            ticks += 1
        elapsed = time.perf_counter() - start
        print(f"teleop: {ticks} ticks in {elapsed:.1f} s = {ticks / elapsed:.0f} Hz with the timing model on")
        print("follower now:", {m: round(v, 1) for m, v in observation.items()})
        health = follower.read_health()
        print("health:", {m: f"{h.temperature_c:.0f}°C {h.voltage_v:.1f}V load {h.load_percent:.1f}%"
                          for m, h in health.items()})

        follower_emu.servo(3).env.faults.silent = True
        try:
            follower.sync_read("Present_Position")
        except ServoNotRespondingError as exc:
            print(f"fault injection, servo 3 unplugged -> {exc}")
        follower_emu.servo(3).env.faults.silent = False
        failed = follower.safe_torque_off()
        print(f"torque off on all servos: {'ok' if not failed else failed}")
        follower.disconnect(disable_torque=False)
        leader.disconnect(disable_torque=False)


if __name__ == "__main__":
    main()
