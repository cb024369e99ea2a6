"""Run several stock `lerobot-*` console scripts one after the other in one interpreter.

Each entry calls exactly what the console script in the venv's bin dir calls (its `console_scripts` entry
point, with `sys.argv` set), so plugin discovery, argument parsing and the command's code are the real ones.
What is shared is only the interpreter: LeRobot's imports cost about 10 s of CPU per process, and the arm tests
run a dozen commands on a shared 2-core machine.

    python entry_points.py '[["lerobot-calibrate", ["--robot.type=...", ...]], ...]'

Prints `<<START i name>>` and `<<END i rc=N>>` around each entry; between entries it waits for one line on
stdin, so a test can inspect or change the emulated arms before the next command starts.

One more saving: draccus builds each command's help text by calling `inspect.getsource` on every config
class once per field (hundreds of re-parses of the same modules, ~10 s per command on this machine). The
result only depends on the class, so it is cached here; parsing itself is unchanged.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
import traceback
from importlib.metadata import entry_points

_getsource = inspect.getsource
_cached_getsource = functools.lru_cache(maxsize=None)(_getsource)


def _getsource_once(obj):
    try:
        return _cached_getsource(obj)
    except TypeError:  # unhashable object: not cacheable
        return _getsource(obj)


inspect.getsource = _getsource_once


def main() -> int:
    plan = json.loads(sys.argv[1])
    rc = 0
    for index, (name, args) in enumerate(plan):
        if index:
            sys.stdin.readline()
        (entry,) = entry_points(group="console_scripts", name=name)
        print(f"<<START {index} {name}>>", flush=True)
        sys.argv = [name, *args]
        try:
            result = entry.load()()
            rc = result if isinstance(result, int) else 0
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - reported like the console script would, then the next entry runs
            traceback.print_exc()
            rc = 1
        print(f"<<END {index} rc={rc}>>", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
