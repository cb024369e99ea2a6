"""Encode one episode's PNG frames with LeRobot's own encoder, optionally in a separate worker process.

A separate process keeps the encoder's CPU time and the GIL away from the control loop (measured on a 2-core
machine: an SVT-AV1 encode on a thread of the recording process stalled a busy Python loop for 0.5 s). The worker
is a plain `python -m` child speaking JSON lines on stdin/stdout, not multiprocessing: it needs no
`if __name__ == "__main__"` guard in the caller's script, is never forked from the multi-threaded recorder, and
exits by itself when the recorder dies (its stdin closes). It is started when the recorder opens, so its import
time overlaps the first episode; it says "ready" once imported, so the encode deadline never includes startup.
Every wait for the worker is bounded: a worker that stops answering (hung codec, stopped process) is killed,
that one encode fails with a message, and the next encode starts a fresh worker.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

WORKER_MODULE = "lerobot_vla_plugin.recording.encoder_worker"
# An episode's encode takes seconds to a minute; no answer for this long means the encoder hangs.
DEFAULT_ENCODE_TIMEOUT_S = 600.0
# Importing LeRobot's video stack in a fresh interpreter on a busy machine.
WORKER_STARTUP_TIMEOUT_S = 300.0


class VideoEncoder:
    """Runs `encoder_worker.encode_episode_video` in the calling thread or in one long-lived worker process."""

    def __init__(self, fps: int, vcodec: str, encoder_threads: int | None, in_subprocess: bool,
                 reply_timeout_s: float = DEFAULT_ENCODE_TIMEOUT_S):
        """`reply_timeout_s` bounds each encode in the worker process (an in-process encode cannot be stopped)."""
        self.fps = fps
        self.vcodec = vcodec
        self.encoder_threads = encoder_threads
        self.in_subprocess = in_subprocess
        self.reply_timeout_s = reply_timeout_s
        self._worker: subprocess.Popen | None = None
        self._worker_ready = False
        self._lock = threading.Lock()
        if in_subprocess:
            self._start_worker()

    @property
    def worker_pid(self) -> int | None:
        return None if self._worker is None else self._worker.pid

    def _start_worker(self) -> None:
        self._worker = subprocess.Popen([sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)
        self._worker_ready = False

    def encode(self, images_dir: Path, video_path: Path) -> float:
        args = [str(images_dir), str(video_path), self.fps, self.vcodec, self.encoder_threads]
        if not self.in_subprocess:
            from lerobot_vla_plugin.recording.encoder_worker import encode_episode_video

            return encode_episode_video(*args)
        with self._lock:
            if self._worker is None or self._worker.poll() is not None:
                self._start_worker()
            if not self._worker_ready:
                self._read_reply(WORKER_STARTUP_TIMEOUT_S, "starting up")
                self._worker_ready = True
            self._worker.stdin.write(json.dumps(args) + "\n")
            self._worker.stdin.flush()
            reply = self._read_reply(self.reply_timeout_s, f"encoding {images_dir}")
        if "error" in reply:
            raise RuntimeError(f"Video encoding of {images_dir} failed: {reply['error']}")
        return float(reply["duration_s"])

    def _read_reply(self, timeout_s: float, doing: str) -> dict:
        """The worker's next reply line, waiting at most `timeout_s`; a silent or dead worker is killed."""
        worker = self._worker
        deadline = time.monotonic() + timeout_s
        ready: list = []
        while not ready and (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([worker.stdout], [], [], remaining)
        line = worker.stdout.readline() if ready else None
        if line:
            return json.loads(line)
        self._kill_worker()
        if line is None:
            raise RuntimeError(f"The video encoder process gave no answer within {timeout_s:g} s while {doing} "
                               f"(hung or stopped); it was killed, and the next episode starts a new one.")
        raise RuntimeError(f"The video encoder process died while {doing} (exit code {worker.returncode}); see "
                           "its messages above.")

    def _kill_worker(self) -> None:
        worker, self._worker = self._worker, None
        worker.kill()
        worker.wait()
        for pipe in (worker.stdin, worker.stdout):
            try:
                pipe.close()
            except OSError:  # a write the dead worker never read is lost with it
                pass

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stdin.close()
            try:
                self._worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._worker.kill()
                self._worker.wait()
            self._worker.stdout.close()
            self._worker = None
