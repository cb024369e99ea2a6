"""Crash-safe LeRobotDataset recording: every finished episode survives a kill -9 or power loss."""

from lerobot_vla_plugin.recording.dataset_writer import (
    SAVE_STAGES,
    CrashSafeRecorder,
    DatasetMismatchError,
    DatasetRootError,
    EpisodeNotSavedError,
    SaveOutcome,
)
from lerobot_vla_plugin.recording.repair import DatasetCorruptError, RepairReport, repair_torn_tail

__all__ = [
    "SAVE_STAGES",
    "CrashSafeRecorder",
    "DatasetCorruptError",
    "DatasetMismatchError",
    "DatasetRootError",
    "EpisodeNotSavedError",
    "RepairReport",
    "SaveOutcome",
    "repair_torn_tail",
]
