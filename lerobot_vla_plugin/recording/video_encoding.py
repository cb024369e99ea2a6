"""Encode one episode's PNG frames with LeRobot's own encoder, optionally in a separate worker process.

A separate process keeps the encoder's CPU time and the GIL away from the control loop (measured on a 2-core
machine: an SVT-AV1 encode on a thread of the recording process stalled a busy Python loop for 0.5 s). The worker
is a plain `python -m` child speaking JSON lines on stdin/stdout, not multiprocessing: it needs no
`if __name__ == "__main__"` guard in the caller's script, is never forked from the multi-threaded recorder, and
exits by itself when the recorder dies (its stdin closes). It is started when the recorder opens, so its import
time overlaps the first episode.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

WORKER_MODULE = "lerobot_vla_plugin.recording.encoder_worker"


class VideoEncoder:
    """Runs `encoder_worker.encode_episode_video` in the calling thread or in one long-lived worker process."""

    def __init__(self, fps: int, vcodec: str, encoder_threads: int | None, in_subprocess: bool):
        self.fps = fps
        self.vcodec = vcodec
        self.encoder_threads = encoder_threads
        self.in_subprocess = in_subprocess
        self._worker: subprocess.Popen | None = None
        self._lock = threading.Lock()
        if in_subprocess:
            self._start_worker()

    def _start_worker(self) -> None:
        self._worker = subprocess.Popen([sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, bufsize=1)

    def encode(self, images_dir: Path, video_path: Path) -> float:
        args = [str(images_dir), str(video_path), self.fps, self.vcodec, self.encoder_threads]
        if not self.in_subprocess:
            from lerobot_vla_plugin.recording.encoder_worker import encode_episode_video

            return encode_episode_video(*args)
        with self._lock:
            if self._worker is None or self._worker.poll() is not None:
                self._start_worker()
            self._worker.stdin.write(json.dumps(args) + "\n")
            self._worker.stdin.flush()
            reply = self._worker.stdout.readline()
        if not reply:
            raise RuntimeError(f"The video encoder process died while encoding {images_dir} "
                               f"(exit code {self._worker.poll()}); see its messages above.")
        reply = json.loads(reply)
        if "error" in reply:
            raise RuntimeError(f"Video encoding of {images_dir} failed: {reply['error']}")
        return float(reply["duration_s"])

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
