"""A LeRobotDataset with every camera frame decoded once and kept in memory, for training on a CPU.

LeRobot's dataset decodes video for every sample it serves: with a small policy on a 2-core machine that decoding
competes with the model for the same cores. Decoding each episode's frames once, in order, and serving samples from
uint8 arrays removes that cost. Samples have the structure LeRobot's dataloader yields (observation at the frame,
`chunk` future actions padded past the episode end with `action_is_pad`), so any LeRobot policy trains on them
through its own pre-processor unchanged.

Memory: frames are kept as uint8, height × width × 3 bytes per camera per frame (74 kB at 96×128 ×2 cameras:
about 0.9 GB for 12 000 frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lerobot.utils.constants import ACTION, OBS_STATE

_DECODE_BATCH_FRAMES = 64


@dataclass
class EpisodeSpan:
    index: int
    start: int  # first global frame of the episode in this cache
    length: int
    task: str


class DecodedFrameDataset(torch.utils.data.Dataset):
    """Samples of `dataset` (a LeRobotDataset opened without delta timestamps) with `chunk_size` actions each.

    `episodes` restricts the cache to those episode indices (a data-scaling study trains on the first N).
    `action_offsets` replaces the chunk's offsets 0..chunk_size-1 with a policy's own `action_delta_indices`
    (e.g. a chunk plus a few far-future steps)."""

    def __init__(self, dataset, chunk_size: int, episodes: list[int] | None = None, progress=None,
                 action_offsets: list[int] | None = None):
        self.meta = dataset.meta
        self.chunk_size = int(chunk_size)
        self.action_offsets = np.asarray(range(self.chunk_size) if action_offsets is None else action_offsets)
        self.camera_keys = list(dataset.meta.camera_keys)
        # Other per-frame vectors LeRobot's loader serves too (e.g. the virtual arm's object positions).
        self.vector_keys = [key for key, ft in dataset.meta.features.items() if key.startswith("observation.")
                            and key != OBS_STATE and key not in self.camera_keys and ft["dtype"] == "float32"]
        wanted = range(dataset.meta.total_episodes) if episodes is None else episodes
        hf = dataset.hf_dataset.with_format(None)
        episode_column = np.asarray(hf["episode_index"])
        frame_column = np.asarray(hf["frame_index"])
        task_names = {int(row["task_index"]): str(name) for name, row in dataset.meta.tasks.iterrows()}
        states, actions, self.spans = [], [], []
        vectors = {key: [] for key in self.vector_keys}
        images = {key: [] for key in self.camera_keys}
        start = 0
        for n, episode in enumerate(wanted):
            rows = np.flatnonzero(episode_column == episode)
            rows = rows[np.argsort(frame_column[rows])]
            if rows.size == 0:
                raise ValueError(f"episode {episode} has no frames in {dataset.root}")
            part = hf.select(rows.tolist())
            states.append(np.asarray(part[OBS_STATE], dtype=np.float32))
            actions.append(np.asarray(part[ACTION], dtype=np.float32))
            for key in self.vector_keys:
                vectors[key].append(np.asarray(part[key], dtype=np.float32))
            timestamps = [float(t) for t in part["timestamp"]]
            for key in self.camera_keys:
                if key in dataset.meta.video_keys:
                    images[key].append(_decode_episode(dataset, key, episode, timestamps))
                else:  # stored as image files: the column holds the decoded frames
                    images[key].append(np.stack([np.asarray(image.convert("RGB")) for image in part[key]]))
            task = task_names[int(part["task_index"][0])]
            self.spans.append(EpisodeSpan(episode, start, rows.size, task))
            start += rows.size
            if progress is not None:
                progress(n + 1, len(wanted))
        self.states = torch.from_numpy(np.concatenate(states))
        self.actions = torch.from_numpy(np.concatenate(actions))
        self.vectors = {key: torch.from_numpy(np.concatenate(parts)) for key, parts in vectors.items()}
        self.images = {key: torch.from_numpy(np.concatenate(frames)) for key, frames in images.items()}
        self._episode_of_frame = np.concatenate([np.full(s.length, i) for i, s in enumerate(self.spans)])

    def __len__(self) -> int:
        return len(self.states)

    @property
    def num_episodes(self) -> int:
        return len(self.spans)

    def __getitem__(self, index: int) -> dict:
        span = self.spans[int(self._episode_of_frame[index])]
        future = index + self.action_offsets
        end = span.start + span.length - 1
        item = {
            OBS_STATE: self.states[index],
            ACTION: self.actions[np.minimum(future, end)],
            "action_is_pad": torch.from_numpy(future > end),
            "task": span.task,
        }
        for key in self.vector_keys:
            item[key] = self.vectors[key][index]
        for key in self.camera_keys:
            item[key] = self.images[key][index].permute(2, 0, 1).float() / 255.0
        return item


def _decode_episode(dataset, key: str, episode: int, timestamps: list[float]) -> np.ndarray:
    """(frames, H, W, 3) uint8 of one camera over one episode, decoded in order in a few calls."""
    chunks = []
    for first in range(0, len(timestamps), _DECODE_BATCH_FRAMES):
        frames = dataset._query_videos({key: timestamps[first : first + _DECODE_BATCH_FRAMES]}, episode)[key]
        if frames.ndim == 3:
            frames = frames[None]
        chunks.append((frames.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    return np.concatenate(chunks)
