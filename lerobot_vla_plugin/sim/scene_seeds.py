"""Which scene seeds the virtual SO-101 uses for recording and which for evaluation: two disjoint ranges.

A policy evaluated on the scenes it was trained on measures memory, not skill. Recording (`lerobot-vla record
--virtual`) draws scene seeds from [0, EVALUATION_SEED_START); evaluation (`lerobot-vla eval`) from
[EVALUATION_SEED_START, SEED_LIMIT). Both commands go through this module, so neither can reach the other's range.
"""

from __future__ import annotations

EVALUATION_SEED_START = 1 << 31
SEED_LIMIT = 1 << 32


def recording_scene_seed(seed: int, episode: int) -> int:
    """Scene seed of recorded episode `episode` of a session started with `--seed`."""
    return _in_range(seed + episode, 0, EVALUATION_SEED_START, "recording", seed)


def evaluation_scene_seed(seed: int, episode: int) -> int:
    """Scene seed of evaluated episode `episode` with `--eval.seed`: never one a recording can use."""
    return _in_range(EVALUATION_SEED_START + seed + episode, EVALUATION_SEED_START, SEED_LIMIT, "evaluation", seed)


def _in_range(scene_seed: int, start: int, stop: int, purpose: str, seed: int) -> int:
    if not start <= scene_seed < stop:
        raise ValueError(f"{purpose} seed {seed} leaves the {purpose} scene range: the seed plus the episode number "
                         f"must stay in [0, {stop - start}).")
    return scene_seed
