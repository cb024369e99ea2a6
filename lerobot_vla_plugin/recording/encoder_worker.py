"""The video encoder worker process: `python -m lerobot_vla_plugin.recording.encoder_worker`.

Once imported it writes {"ready": true}; then one JSON list of arguments of `encode_episode_video` per line on
stdin, one JSON reply per line on stdout, until stdin closes (which also happens when the recorder dies). Kept
apart from `video_encoding` so that running it with `-m` does not import it twice.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path


def encode_episode_video(images_dir: str, video_path: str, fps: int, vcodec: str,
                         encoder_threads: int | None) -> float:
    """Encode like `lerobot-record` (same codec options and pixel format); returns the duration in seconds."""
    from lerobot.datasets.video_utils import encode_video_frames, get_video_duration_in_s

    encode_video_frames(Path(images_dir), Path(video_path), fps, vcodec=vcodec, overwrite=True,
                        encoder_threads=encoder_threads)
    return get_video_duration_in_s(video_path)


def serve() -> None:
    # Ctrl-C reaches the whole process group; the recorder decides when this worker stops (by closing stdin),
    # so the worker neither dies mid-episode nor prints a stray KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints of libraries must not corrupt replies
    import lerobot.datasets.video_utils  # noqa: F401 - pay the import before the first request

    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        try:
            reply = {"duration_s": encode_episode_video(*json.loads(line))}
        except Exception as exc:  # noqa: BLE001 - sent back to the recorder, which rolls the episode back
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    serve()
