"""Camera frames written to PNG by background threads, through a bounded queue.

The control loop only enqueues arrays; PNG compression happens on worker threads (PIL releases the GIL while
compressing). The queue is bounded so a disk that cannot keep up shows up as measured backpressure instead of
unbounded memory growth, and frames are counted per take so a save waits only for its own images.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class Backpressure:
    """How often, and for how long in total, `add_frame` had to wait for a full queue."""

    full_queue_waits: int = 0
    waited_s: float = 0.0
    max_queue_depth: int = 0


class ImageWriteError(RuntimeError):
    pass


def _to_numpy_hwc(image) -> np.ndarray:
    """Accept what cameras and LeRobot frames hold: numpy or torch, HWC or CHW, uint8 or float in [0, 1]."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    return np.asarray(image)


class ImageWriterPool:
    def __init__(self, num_threads: int = 4, max_queued_images: int = 256):
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, max_queued_images))
        self._pending: dict[int, int] = defaultdict(int)
        self._errors: dict[int, str] = {}
        self._condition = threading.Condition()
        self.backpressure = Backpressure()
        self._threads = [threading.Thread(target=self._work, name=f"png-writer-{i}", daemon=True)
                         for i in range(num_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, take_id: int, image, path: Path, compress_level: int) -> None:
        """Queue one image; blocks (and records backpressure) only when the queue is full."""
        with self._condition:
            self._pending[take_id] += 1
        item = (take_id, _to_numpy_hwc(image), path, compress_level)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            started = time.perf_counter()
            self._queue.put(item)
            waited = time.perf_counter() - started
            if self.backpressure.full_queue_waits == 0:
                logger.warning("Image queue full: the disk is not keeping up with the cameras; "
                               "add_frame waited %.3f s. Consider fewer/lower-resolution cameras or a faster disk.",
                               waited)
            self.backpressure.full_queue_waits += 1
            self.backpressure.waited_s += waited
        self.backpressure.max_queue_depth = max(self.backpressure.max_queue_depth, self._queue.qsize())

    def wait_for_take(self, take_id: int) -> None:
        """Block until every image of `take_id` is on disk; raise if any could not be written."""
        with self._condition:
            self._condition.wait_for(lambda: self._pending.get(take_id, 0) == 0)
            self._pending.pop(take_id, None)
            error = self._errors.pop(take_id, None)
        if error is not None:
            raise ImageWriteError(error)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        from lerobot.datasets.image_writer import image_array_to_pil_image

        while True:
            item = self._queue.get()
            if item is None:
                return
            take_id, image, path, compress_level = item
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                image_array_to_pil_image(image).save(path, compress_level=compress_level)
            except Exception as exc:  # noqa: BLE001 - reported to the saver of this take
                with self._condition:
                    self._errors.setdefault(take_id, f"could not write camera image {path}: {exc}")
            finally:
                with self._condition:
                    self._pending[take_id] -= 1
                    self._condition.notify_all()
