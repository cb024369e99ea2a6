"""The video encoder worker survives Ctrl-C quietly: the recorder, not the terminal, decides when it stops."""

from __future__ import annotations

import json
import signal
import subprocess
import sys


def test_ctrl_c_neither_kills_the_encoder_worker_nor_prints_a_traceback():
    worker = subprocess.Popen([sys.executable, "-m", "lerobot_vla_plugin.recording.encoder_worker"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(worker.stdout.readline()) == {"ready": True}
        worker.send_signal(signal.SIGINT)  # what Ctrl-C sends to every process of the terminal's group
        worker.stdin.write(json.dumps(["/nonexistent/images", "/nonexistent/out.mp4", 30, "libsvtav1", None]) + "\n")
        worker.stdin.flush()
        assert "error" in json.loads(worker.stdout.readline())  # still serving after the signal
        worker.stdin.close()  # how the recorder stops it
        assert worker.wait(timeout=60) == 0
        stderr = worker.stderr.read()
    finally:
        if worker.poll() is None:
            worker.kill()
    assert "KeyboardInterrupt" not in stderr and "Traceback" not in stderr
