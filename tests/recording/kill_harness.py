"""Records episodes in forked children that get SIGKILLed; driven by test_kill.py over stdin/stdout.

Importing LeRobot takes seconds, so this process imports it once, starts no threads, and forks one child per
kill point. Each child resumes the shared dataset (repairing what the previous kill tore), records episodes whose
state vector encodes (run, take, frame), and reports on a pipe every step it completes. The SIGKILL comes either
from inside, right when a chosen save stage is reached (optionally after a short random delay, to land in the
middle of the next step), or from this process after a random delay.

Request (one JSON line): {"root", "run", "episodes", "frames", "mode": "stage"|"time"|"none", "stage",
"stage_episode", "delay_s"}. Reply (one JSON line): {"finished": [[take, episode_index], ...], "stages": [...],
"killed": bool, "elapsed_s": float, ...}.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import datasets  # noqa: F401 - imported here once, before forking, so children start warm
import lerobot.datasets.compute_stats
import lerobot.datasets.utils
import lerobot.datasets.video_utils  # noqa: F401
import numpy as np
import pandas  # noqa: F401
import pyarrow.parquet  # noqa: F401

from lerobot_vla_plugin.recording import CrashSafeRecorder

FPS = 10
IMAGE_SHAPE = (32, 32, 3)
FRAMES_PER_EPISODE = 3
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
FEATURES = {
    "observation.state": {"dtype": "float32", "shape": (6,), "names": JOINTS},
    "action": {"dtype": "float32", "shape": (6,), "names": JOINTS},
    "observation.images.front": {"dtype": "video", "shape": IMAGE_SHAPE, "names": ["height", "width", "channels"]},
}
TASKS = ("put the red cube in the bowl", "put the blue cube in the bowl")


def frame_for(run: int, take: int, frame_index: int) -> dict:
    """A frame whose state says exactly where it came from, so misplaced or mixed rows are detected."""
    state = np.array([run, take, frame_index, 0, 0, 0], dtype=np.float32)
    image = np.full(IMAGE_SHAPE, (40 * take + 20 * frame_index) % 256, dtype=np.uint8)
    return {"observation.state": state, "action": state + 0.5, "observation.images.front": image,
            "task": TASKS[take % 2]}


def open_recorder(root: str) -> CrashSafeRecorder:
    kwargs = {"fps": FPS, "robot_type": "vla_so101_follower", "features": FEATURES, "encode_in_subprocess": False,
              "image_writer_threads": 1}
    if os.path.exists(os.path.join(root, "meta", "info.json")):
        return CrashSafeRecorder.resume("local/kill_test", root, **kwargs)
    return CrashSafeRecorder.create("local/kill_test", root, **kwargs)


def child(request: dict, report_fd: int) -> None:
    def report(*fields) -> None:
        os.write(report_fd, (" ".join(str(f) for f in fields) + "\n").encode())

    def die_later(delay_s: float) -> None:
        if delay_s <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
        threading.Timer(delay_s, os.kill, (os.getpid(), signal.SIGKILL)).start()

    def on_stage(stage: str, episode_index: int) -> None:
        report("stage", stage, episode_index)
        if request["mode"] == "stage" and stage == request["stage"] and take_now[0] == request["stage_episode"]:
            die_later(request["delay_s"])

    take_now = [0]
    recorder = open_recorder(request["root"])
    report("opened", recorder.num_episodes)
    recorder.stage_listener = on_stage
    for take in range(request["episodes"]):
        take_now[0] = take
        for frame_index in range(request["frames"]):
            recorder.add_frame(frame_for(request["run"], take, frame_index))
        episode_index = recorder.save_episode({"achieved_hz": FPS - 0.1 * take})
        report("finished", take, episode_index)
    recorder.close()
    report("closed")
    if request["mode"] != "none":
        time.sleep(3.0)  # a kill planned for after the work still lands (then it hits a closed recorder)


def handle(request: dict) -> dict:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code = 0
        try:
            child(request, write_fd)
        except BaseException as exc:  # noqa: BLE001 - reported to the test through the exit code
            print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
        os._exit(code)
    os.close(write_fd)
    started = time.monotonic()
    if request["mode"] == "time":
        time.sleep(request["delay_s"])
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(pid, 0)
    elapsed_s = time.monotonic() - started
    output = b""
    while chunk := os.read(read_fd, 65536):
        output += chunk
    os.close(read_fd)
    lines = [line.split() for line in output.decode().splitlines()]
    return {
        "finished": [[int(l[1]), int(l[2])] for l in lines if l[0] == "finished"],
        "stages": [f"{l[1]}:{l[2]}" for l in lines if l[0] == "stage"],
        "opened_with": next((int(l[1]) for l in lines if l[0] == "opened"), None),
        "closed": any(l[0] == "closed" for l in lines),
        "killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
        "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "elapsed_s": elapsed_s,
    }


def main() -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(handle(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
