"""Every registered arm type through the stock LeRobot commands, against emulated servo buses.

Three follower/leader pairs cover the six types. For each: `lerobot-calibrate` both arms (prompts answered on
stdin while the test moves the limp emulated joints), `lerobot-teleoperate` (the follower tracks the leader;
each pair ends the session differently: time limit, leader failure, SIGTERM), `lerobot-record` one short
episode, then `lerobot-replay` it onto the follower after it was pushed elsewhere by hand.

The commands of one kind run in one interpreter (tests/arms/entry_points.py) to pay LeRobot's import once.
"""

from __future__ import annotations

import json
import signal
from contextlib import ExitStack

import pytest

from .conftest import drive_calibration, emulated, lerobot_env, move_by_hand, wait_until

pytestmark = pytest.mark.slow

MIDDLE = 2100
# Leader poses (actual shaft steps by servo id) the follower must reproduce.
POSE_TELEOP = {2: MIDDLE + 300, 3: MIDDLE - 250, 6: MIDDLE + 200}
POSE_RECORD = {1: MIDDLE + 150, 2: MIDDLE - 200, 4: MIDDLE + 250}

# (follower type, emulated arm, leader type, emulated arm, how its teleoperation session ends); SIGTERM last,
# because it ends the interpreter that runs the sessions.
PAIRS = (
    ("vla_so101_follower", "so101", "vla_so100_leader", "so100-leader", "time_limit"),
    ("vla_koch_follower", "koch-follower", "vla_koch_leader", "koch-leader", "leader_failure"),
    ("vla_so100_follower", "so100", "vla_so101_leader", "so101-leader", "sigterm"),
)
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


def _direction(follower_type: str, servo_id: int) -> int:
    """The Koch leader's elbow is wired inverted (Drive_Mode 1, as in LeRobot): its follower turns the other way."""
    return -1 if follower_type == "vla_koch_follower" and servo_id == 3 else 1


def _follows(follower_bus, follower_type: str, leader_bus, servo_ids, start: dict[int, float]) -> bool:
    """The follower's shafts moved from their start as the leader's moved from the middle (the Koch leader's
    gripper is a torqued spring trigger, so its shaft is compared, not where the hand tried to put it)."""
    for servo_id in servo_ids:
        leader = leader_bus.servo(servo_id)
        hand = leader.actuator.hand_position_steps
        if not leader.torque_enabled and hand is not None and abs(leader.actuator.position_steps - hand) > 1:
            return False  # the leader has not been read since the hand moved it
        moved = leader.actuator.position_steps - MIDDLE
        expected = start[servo_id] + _direction(follower_type, servo_id) * moved
        if abs(follower_bus.servo(servo_id).actuator.position_steps - expected) > 20:
            return False
    return True


def _torque_off(bus) -> bool:
    return not any(servo.torque_enabled for servo in bus.servos)



class Pair:
    def __init__(self, stack: ExitStack, follower_type, follower_arm, leader_type, leader_arm, ending):
        self.follower_type, self.leader_type, self.ending = follower_type, leader_type, ending
        self.follower = stack.enter_context(emulated(follower_arm))
        self.leader = stack.enter_context(emulated(leader_arm))
        self.robot = [f"--robot.type={follower_type}", f"--robot.port={self.follower.port}", "--robot.id=follower"]
        self.teleop = [f"--teleop.type={leader_type}", f"--teleop.port={self.leader.port}", "--teleop.id=leader"]
        self.start: dict[int, float] = {}

    def follows(self, pose) -> bool:
        return _follows(self.follower, self.follower_type, self.leader, pose, self.start)


def test_every_arm_type_through_calibrate_teleoperate_record_replay(tmp_path, commands):
    env = lerobot_env(tmp_path / "home")
    with ExitStack() as stack:
        pairs = [Pair(stack, *spec) for spec in PAIRS]

        # -- lerobot-calibrate: all six arms, the user's moves played on the emulated joints ------------------
        plan = [("lerobot-calibrate", args) for pair in pairs for args in (pair.robot, pair.teleop)]
        calibrate = commands(plan, env, tmp_path)
        buses = [bus for pair in pairs for bus in (pair.follower, pair.leader)]
        for index, bus in enumerate(buses):
            calibrate.started(index)
            drive_calibration(calibrate, bus, middle=MIDDLE)
            assert calibrate.ended(index) == 0, calibrate.section(index)
            calibrate.next()
        assert calibrate.finish() == 0
        for pair in pairs:
            for kind, device_type, bus, device_id in (("robots", pair.follower_type, pair.follower, "follower"),
                                                      ("teleoperators", pair.leader_type, pair.leader, "leader")):
                saved = json.loads((tmp_path / "home" / "calibration" / kind / device_type /
                                    f"{device_id}.json").read_text())
                assert list(saved) == JOINTS
                for joint, cal in saved.items():
                    servo = bus.servo(cal["id"])
                    assert servo.memory.get_raw("Min_Position_Limit") == cal["range_min"], (device_type, joint)
                    assert servo.memory.get_raw("Max_Position_Limit") == cal["range_max"], (device_type, joint)
                assert saved["shoulder_lift"]["range_max"] - saved["shoulder_lift"]["range_min"] == 1200
            for servo in pair.follower.servos:
                servo.actuator.hand_position_steps = None  # let go of the follower
            pair.start = {s.id: s.actuator.position_steps for s in pair.follower.servos}
            move_by_hand(pair.leader, POSE_TELEOP)

        # -- lerobot-teleoperate: the follower tracks the leader; three ways the session ends --------------
        plan = [("lerobot-teleoperate", [*pair.robot, *pair.teleop, "--fps=60", "--display_data=false",
                                         "--teleop_time_s=" + ("5" if pair.ending == "time_limit" else "300")])
                for pair in pairs]
        teleoperate = commands(plan, env, tmp_path)
        for index, pair in enumerate(pairs):
            teleoperate.started(index)
            wait_until(lambda pair=pair: pair.follows(POSE_TELEOP), timeout_s=120,
                       what=f"{pair.follower_type} to track the leader:\n{teleoperate.tail()}")
            assert not _torque_off(pair.follower)
            if pair.ending == "time_limit":
                assert teleoperate.ended(index) == 0, teleoperate.section(index)
            elif pair.ending == "leader_failure":
                for servo in pair.leader.servos:
                    servo.env.faults.silent = True
                assert teleoperate.ended(index) != 0
                assert "No valid reply from servo" in teleoperate.section(index)
                for servo in pair.leader.servos:
                    servo.env.faults.silent = False
            else:
                teleoperate.proc.send_signal(signal.SIGTERM)
                assert teleoperate.ended(index) == 128 + signal.SIGTERM, teleoperate.section(index)
                assert "torque off (received SIGTERM)" in teleoperate.section(index)
            assert _torque_off(pair.follower), f"{pair.follower_type} left torqued after {pair.ending}"
            teleoperate.next()
        assert teleoperate.finish() == 128 + signal.SIGTERM

        # -- lerobot-record one short episode per pair, then lerobot-replay it ------------------------------
        plan = []
        for index, pair in enumerate(pairs):
            root = tmp_path / f"dataset{index}"
            plan.append(("lerobot-record", [
                *pair.robot, *pair.teleop, f"--dataset.repo_id=local/arms{index}", f"--dataset.root={root}",
                "--dataset.single_task=hold", "--dataset.num_episodes=1", "--dataset.episode_time_s=2",
                "--dataset.reset_time_s=0", "--dataset.fps=30", "--dataset.push_to_hub=false",
                "--dataset.video=false", "--display_data=false", "--play_sounds=false"]))
            plan.append(("lerobot-replay", [*pair.robot, f"--dataset.repo_id=local/arms{index}",
                                            f"--dataset.root={root}", "--dataset.episode=0", "--play_sounds=false"]))
        sequence = commands(plan, env, tmp_path)
        for index, pair in enumerate(pairs):
            move_by_hand(pair.leader, {**{s.id: MIDDLE for s in pair.leader.servos}, **POSE_RECORD})
            if index:
                sequence.next()
            assert sequence.ended(2 * index) == 0, sequence.section(2 * index)
            info = json.loads((tmp_path / f"dataset{index}" / "meta" / "info.json").read_text())
            assert info["robot_type"] == pair.follower_type
            assert info["total_episodes"] == 1 and info["total_frames"] >= 10
            assert info["features"]["action"]["names"] == [f"{j}.pos" for j in JOINTS]
            assert info["features"]["observation.state"]["names"] == [f"{j}.pos" for j in JOINTS]
            assert pair.follows(POSE_RECORD)
            assert _torque_off(pair.follower)

            # Push the limp follower away from the recorded pose; the replay must bring it back.
            pushed = {i: pair.follower.servo(i).actuator.position_steps + 120 for i in POSE_RECORD}
            move_by_hand(pair.follower, pushed)
            pair.follower.advance()
            pair.follower.advance()  # a limp shaft follows the hand when the emulator's time moves on
            assert not pair.follows(POSE_RECORD)
            assert any(pair.leader.servo(i).actuator.position_steps != MIDDLE for i in POSE_RECORD)
            for servo in pair.follower.servos:
                servo.actuator.hand_position_steps = None
            sequence.next()
            assert sequence.ended(2 * index + 1) == 0, sequence.section(2 * index + 1)
            assert "ramping to it" in sequence.section(2 * index + 1)
            assert pair.follows(POSE_RECORD), sequence.section(2 * index + 1)
            assert _torque_off(pair.follower)
        assert sequence.finish() == 0
