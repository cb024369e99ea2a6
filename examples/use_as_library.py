"""lerobot_vla_plugin as a library: one hands-free demonstration on the virtual SO-101, in this process.

The virtual SO-101 serves its follower and leader servo buses on pseudo-terminals, as USB adapters appear on a
real machine. Our registered `vla_so101_follower` and `vla_so101_leader` connect to those ports through the same
servo driver a real arm uses, and the loop below is lerobot-record's: read the follower (joints and a
`vla_sim_camera` image), read the leader, send the leader's pose to the follower. A scripted operator moves the
leader through a pick-and-place, so the follower does the task in the simulated world; the script prints whether
the cube ended in the bowl.

    MUJOCO_GL=egl python examples/use_as_library.py [--task red|blue] [--seed N] [--camera-size 128x96]

On a real arm the same two configs take the adapters' ports (`lerobot-vla find-port`) and the calibration
`lerobot-calibrate` wrote; everything from `make_robot_from_config` on stays as it is.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lerobot.robots.utils import make_robot_from_config
from lerobot.teleoperators.utils import make_teleoperator_from_config

from lerobot_vla_plugin.arms.virtual_so101 import LOCKSTEP_OBSERVATION_REUSE_MS
from lerobot_vla_plugin.cameras.config_virtual_camera import VirtualCameraConfig
from lerobot_vla_plugin.emulator.virtual_arm import VirtualSO101
from lerobot_vla_plugin.robots.so_follower.config_so_follower import VlaSO101FollowerConfig
from lerobot_vla_plugin.sim.so101 import TASKS
from lerobot_vla_plugin.teleoperators.so_leader.config_so_leader import VlaSO101LeaderConfig

FPS = 30
SETTLE_S = 0.5  # keep the loop running after the demonstration ends, while the cube settles in the bowl


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="red")
    parser.add_argument("--seed", type=int, default=0, help="scene layout and demonstration seed")
    parser.add_argument("--camera-size", default="128x96", help="WIDTHxHEIGHT of the front camera")
    parser.add_argument("--max-seconds", type=float, default=30.0, help="simulated seconds before giving up")
    args = parser.parse_args()
    width, height = (int(n) for n in args.camera_size.lower().split("x"))

    # lockstep: simulated time advances one control period per follower read, so the result does not depend on
    # how fast this machine is. camera_socket=None: the cameras are rendered in this process.
    with VirtualSO101(lockstep=True, control_hz=FPS, camera_socket=None) as arm, \
            tempfile.TemporaryDirectory() as calibration_dir:
        # The calibration files lerobot-calibrate would have written for this arm.
        arm.write_calibration_file(Path(calibration_dir) / "follower.json", "follower")
        arm.write_calibration_file(Path(calibration_dir) / "leader.json", "leader")
        robot = make_robot_from_config(VlaSO101FollowerConfig(
            port=arm.follower_port, id="follower", calibration_dir=Path(calibration_dir),
            cameras={"front": VirtualCameraConfig(camera="front", width=width, height=height, fps=FPS)},
            # send_action is the control tick: goals written and positions read back in one bus transfer.
            # In lockstep every position read moves simulated time, so get_observation reuses those.
            observation_reuse_ms=LOCKSTEP_OBSERVATION_REUSE_MS))
        leader = make_teleoperator_from_config(VlaSO101LeaderConfig(
            port=arm.leader_port, id="leader", calibration_dir=Path(calibration_dir)))
        arm.new_episode(args.task, seed=args.seed)  # random scene, demonstration planned
        robot.connect()
        leader.connect()
        try:
            print(f"task: {TASKS[args.task]!r} (scene seed {args.seed}); follower on {arm.follower_port}, "
                  f"leader on {arm.leader_port}")
            wall_start, ticks, done_at = time.perf_counter(), 0, None
            while ticks < args.max_seconds * FPS:
                observation = robot.get_observation()  # joints in degrees (gripper 0..100) and the image
                action = leader.get_action()  # the operator's hand on the leader
                robot.send_action(action)  # clamped by the follower's safety limits: one bus transfer
                ticks += 1
                if done_at is None and arm.demonstration_done:
                    done_at = ticks
                if done_at is not None and ticks - done_at >= SETTLE_S * FPS:
                    break
            wall_s = time.perf_counter() - wall_start
            joints = ", ".join(f"{name.removesuffix('.pos')} {value:.1f}"
                               for name, value in observation.items() if name.endswith(".pos"))
            print(f"{ticks} control ticks = {ticks / FPS:.1f} simulated s in {wall_s:.1f} wall s; "
                  f"front camera {observation['front'].shape}")
            print(f"last follower pose: {joints}")
            success = arm.is_success()
            print(f"task succeeded: {success}")
        finally:
            leader.disconnect()
            robot.disconnect()  # torque off, port closed
    return 0 if success else 1


if __name__ == "__main__":
    raise SystemExit(main())
