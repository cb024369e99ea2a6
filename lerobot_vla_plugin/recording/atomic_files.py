"""Write files so that a crash or power loss leaves either the old file or the complete new one, never half.

Every file is written under a hidden temporary name in its final directory, flushed to the disk, then renamed
over the final name (a rename inside one directory is atomic on POSIX filesystems), and the directory entry is
flushed too so the rename itself survives a power loss. Temporary names are hidden and contain `PARTIAL_MARK`;
parquet ones do not end in `.parquet`, so they match none of LeRobot's globs (`*/*.parquet`) and a leftover one
is invisible to readers (video files are only ever opened by the exact path the episode index names). The next
repair deletes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

PARTIAL_MARK = ".partial"


def temporary_path_for(final_path: Path, keep_extension: bool = False) -> Path:
    """A unique hidden sibling of `final_path`, so concurrent or leftover writes never collide.

    `keep_extension` keeps e.g. `.mp4` last, for writers that pick the container format from the name.
    """
    unique = uuid.uuid4().hex[:12]
    if keep_extension:
        return final_path.with_name(f".{final_path.stem}.{unique}{PARTIAL_MARK}{final_path.suffix}")
    return final_path.with_name(f".{final_path.name}.{unique}{PARTIAL_MARK}")


def is_temporary_path(path: Path) -> bool:
    return path.name.startswith(".") and PARTIAL_MARK in path.name


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    """Persist the directory entries (new names, renames, deletions) of `path`."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # platforms without directory handles (Windows): the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_file(temporary_path: Path, final_path: Path) -> None:
    """Make the fully written `temporary_path` appear as `final_path` in one step."""
    fsync_file(temporary_path)
    os.replace(temporary_path, final_path)
    fsync_directory(final_path.parent)


@contextlib.contextmanager
def atomic_path(final_path: Path, keep_extension: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces `final_path`, on error it is removed."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path_for(final_path, keep_extension)
    try:
        yield temporary
        commit_file(temporary, final_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def write_json_atomic(data: dict, final_path: Path) -> None:
    """Same JSON layout as LeRobot's `write_json` (indent 4, UTF-8 kept), written atomically."""
    with atomic_path(final_path) as temporary, open(temporary, "w") as f:
        json.dump(data, f, indent=4, ensure_ascii=False)


def remove_durably(path: Path) -> None:
    """Delete a file and persist the deletion, so a repaired tail cannot reappear after a power loss."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        fsync_directory(path.parent)
