"""Torque off on every way a process can end: normal exit, uncaught exception, Ctrl-C, SIGTERM.

LeRobot's scripts disconnect in `finally`, which covers exceptions and Ctrl-C in their main loop, but not a
SIGTERM (the default action kills the process without unwinding, leaving the follower torqued), an exception
in a leader's `disconnect()` (it runs first and skips the follower's), or user scripts without `finally`.

Handlers are installed while at least one device is registered and removed with the last one; a signal first
sends an immediate torque-off (one sync write, no reply to wait for), then is passed on to whatever handler
was installed before, so Ctrl-C still raises KeyboardInterrupt and the program unwinds as it would have.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_lock = threading.RLock()
_devices: dict[int, object] = {}  # id(device) -> device with emergency_torque_off(reason) and release()
_previous_handlers: dict[int, object] = {}
_atexit_registered = False


def register(device) -> None:
    """Watch `device` until `unregister`. It must offer `emergency_torque_off(reason)` and `release(reason)`."""
    global _atexit_registered
    with _lock:
        _devices[id(device)] = device
        if not _atexit_registered:
            atexit.register(_release_all_at_exit)
            _atexit_registered = True
        _install_signal_handlers()


def unregister(device) -> None:
    with _lock:
        _devices.pop(id(device), None)
        if not _devices:
            _restore_signal_handlers()


def registered() -> list:
    with _lock:
        return list(_devices.values())


def _install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # Python only allows handlers in the main thread; atexit and disconnect still apply
    for signum in _SIGNALS:
        if signum in _previous_handlers:
            continue
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN or previous is None:
            continue  # the program chose to ignore it (or it was set from C): leave it alone
        signal.signal(signum, _on_signal)
        _previous_handlers[signum] = previous


def _restore_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum, previous in list(_previous_handlers.items()):
        if signal.getsignal(signum) is _on_signal:
            signal.signal(signum, previous)
        del _previous_handlers[signum]


def _on_signal(signum, frame):
    name = signal.Signals(signum).name
    for device in registered():
        try:
            device.emergency_torque_off(f"received {name}")
        except Exception as exc:  # noqa: BLE001 - one broken device must not keep the others torqued
            logger.error("Torque-off on %s after %s failed: %s", device, name, exc)
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        return previous(signum, frame)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)  # the default for SIGTERM is to die; unwind instead so `finally` blocks run


def _release_all_at_exit() -> None:
    for device in registered():
        try:
            device.release("the Python process is exiting without having disconnected it")
        except Exception as exc:  # noqa: BLE001
            logger.error("Torque-off on %s at exit failed: %s", device, exc)
