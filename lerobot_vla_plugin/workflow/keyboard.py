"""Episode control keys that work everywhere: the terminal first, pynput when a display allows it.

LeRobot's recorder only listens through pynput, which hears nothing on Wayland, over SSH, headless or from an
untrusted macOS Python. The terminal always works: stdin in cbreak mode (keys arrive one by one, no echo, Ctrl-C
still interrupts), read by a thread. pynput is added on top when an X display exists, for users who keep the
focus on a camera window.

Keys: → or n = next episode (end this one / end the reset), ← or r = re-record, Esc or q = stop.
A hands-free trigger (a double squeeze of the leader's gripper) can request "next" as well.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from typing import Self

logger = logging.getLogger(__name__)

NEXT, RERECORD, STOP = "next", "rerecord", "stop"
KEY_ACTIONS: dict[str, str] = {"right": NEXT, "n": NEXT, "left": RERECORD, "r": RERECORD, "esc": STOP, "q": STOP}
KEY_HELP = "→/n next episode, ←/r re-record, Esc/q stop"

# A lone ESC byte is the Esc key only if no escape sequence follows it within this time.
ESCAPE_SEQUENCE_WAIT_S = 0.05
# The same key seen by two listeners (terminal and pynput) within this window counts once.
DUPLICATE_WINDOW_S = 0.3

_CSI_KEYS = {"A": "up", "B": "down", "C": "right", "D": "left", "H": "home", "F": "end"}


class EpisodeEvents:
    """What the operator asked for, read by the control loop between ticks.

    `exit_early` ends the current phase (episode or reset); `rerecord` and `stop` say what comes next.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self.exit_early = False
        self.rerecord = False
        self.stop = False
        self._last: tuple[str, str, float] | None = None

    def request(self, action: str, source: str = "keyboard") -> bool:
        """Record `action` (NEXT, RERECORD or STOP); False when it duplicates the same key from another listener."""
        if action not in (NEXT, RERECORD, STOP):
            raise ValueError(f"unknown episode action {action!r}; expected {NEXT!r}, {RERECORD!r} or {STOP!r}")
        now = self._clock()
        with self._lock:
            if self._last is not None:
                last_action, last_source, last_at = self._last
                if last_action == action and last_source != source and now - last_at < DUPLICATE_WINDOW_S:
                    return False
            self._last = (action, source, now)
            self.exit_early = True
            if action == RERECORD:
                self.rerecord = True
            elif action == STOP:
                self.stop = True
        return True

    def start_phase(self) -> None:
        """A new episode or reset begins: a pending 'next' was for the phase that just ended."""
        with self._lock:
            self.exit_early = self.stop

    def take_rerecord(self) -> bool:
        with self._lock:
            asked, self.rerecord = self.rerecord, False
            return asked


class KeyDecoder:
    """Turns terminal bytes into key names ("right", "left", "esc", "n", ...), one byte at a time.

    Arrow keys arrive as escape sequences (ESC [ C, or ESC O C in application mode); a lone ESC is the Esc key,
    which the reader can only know once no more bytes follow (`flush`).
    """

    def __init__(self):
        self._pending = b""

    @property
    def waiting_for_sequence(self) -> bool:
        return bool(self._pending)

    def feed(self, data: bytes) -> list[str]:
        keys = []
        for byte in data:
            char = bytes([byte])
            if self._pending:
                self._pending += char
                key = self._decode_sequence()
                if key is not None:
                    keys.append(key)
                continue
            if char == b"\x1b":
                self._pending = char
            elif 32 <= byte < 127:
                keys.append(char.decode().lower())
            elif char in (b"\r", b"\n"):
                keys.append("enter")
        return [key for key in keys if key]

    def flush(self) -> list[str]:
        """No byte followed: a pending lone ESC is the Esc key (an unfinished sequence is dropped)."""
        pending, self._pending = self._pending, b""
        return ["esc"] if pending == b"\x1b" else []

    def _decode_sequence(self) -> str | None:
        """'' while a sequence is incomplete or unknown-and-finished is swallowed; None means keep reading."""
        seq = self._pending
        if len(seq) == 2:
            if seq[1:] in (b"[", b"O"):
                return None
            if seq[1:] == b"\x1b":  # Esc pressed twice: the first one was a lone Esc
                self._pending = b"\x1b"
                return "esc"
            self._pending = b""  # Alt+key: ignored
            return ""
        final = seq[-1:]
        if final.isalpha() or final == b"~":  # CSI/SS3 sequences end with a letter or '~'
            self._pending = b""
            return _CSI_KEYS.get(final.decode(), "")
        if len(seq) > 16:
            self._pending = b""
            return ""
        return None


class TerminalKeyReader:
    """Reads keys from a terminal file descriptor (stdin by default) in cbreak mode, on a daemon thread.

    The terminal's previous mode is restored by `stop()` (also on exceptions, via the context manager).
    """

    def __init__(self, on_key: Callable[[str], None], fd: int | None = None):
        self.on_key = on_key
        self.fd = sys.stdin.fileno() if fd is None else fd
        self._saved_mode = None
        self._thread: threading.Thread | None = None
        self._wake_read, self._wake_write = -1, -1
        self._stopping = threading.Event()

    @staticmethod
    def available(fd: int | None = None) -> bool:
        try:
            import termios  # noqa: F401 - POSIX only
        except ImportError:
            return False
        try:
            return os.isatty(sys.stdin.fileno() if fd is None else fd)
        except (ValueError, OSError):
            return False

    def start(self) -> Self:
        import termios
        import tty

        self._saved_mode = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        self._wake_read, self._wake_write = os.pipe()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._read_loop, name="terminal-keys", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        import termios

        if self._thread is None:
            return
        self._stopping.set()
        os.write(self._wake_write, b"x")
        self._thread.join(timeout=2.0)
        self._thread = None
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
        if self._saved_mode is not None:
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved_mode)
            except termios.error as exc:  # the terminal went away (SSH dropped): nothing left to restore
                logger.debug("could not restore the terminal mode: %s", exc)
            self._saved_mode = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _read_loop(self) -> None:
        decoder = KeyDecoder()
        while not self._stopping.is_set():
            timeout = ESCAPE_SEQUENCE_WAIT_S if decoder.waiting_for_sequence else None
            try:
                ready, _, _ = select.select([self.fd, self._wake_read], [], [], timeout)
            except (OSError, ValueError):
                return
            if self._wake_read in ready:
                return
            if not ready:
                keys = decoder.flush()
            else:
                try:
                    data = os.read(self.fd, 64)
                except OSError:
                    return
                if not data:
                    return  # end of input (the terminal closed)
                keys = decoder.feed(data)
            for key in keys:
                try:
                    self.on_key(key)
                except Exception:
                    logger.exception("key handler failed for %r", key)


class PynputKeyListener:
    """pynput's global listener, for desktops with an X display (it hears nothing on Wayland or over SSH)."""

    def __init__(self, on_key: Callable[[str], None]):
        self.on_key = on_key
        self._listener = None

    @staticmethod
    def available() -> bool:
        if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
            return False
        try:
            import pynput.keyboard  # noqa: F401
        except Exception:  # noqa: BLE001 - any import failure (no X, no backend) means "not available"
            return False
        return True

    def start(self) -> PynputKeyListener:
        from pynput import keyboard

        special = {keyboard.Key.right: "right", keyboard.Key.left: "left", keyboard.Key.esc: "esc"}

        def on_press(key):
            name = special.get(key) or (getattr(key, "char", None) or "").lower()
            if name:
                self.on_key(name)

        self._listener = keyboard.Listener(on_press=on_press)
        self._listener.start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None


class KeyboardControl:
    """Every available key listener, feeding one `EpisodeEvents`.

    mode: "auto" (terminal when stdin is a terminal, plus pynput when a display exists), "terminal", "pynput"
    or "none".
    """

    MODES = ("auto", "terminal", "pynput", "none")

    def __init__(self, events: EpisodeEvents, mode: str = "auto", echo: Callable[[str], None] = print):
        if mode not in self.MODES:
            raise ValueError(f"keyboard mode must be one of {', '.join(self.MODES)}; got {mode!r}")
        self.events = events
        self.mode = mode
        self.echo = echo
        self.listeners: list = []

    def _handler(self, source: str) -> Callable[[str], None]:
        def on_key(key: str) -> None:
            action = KEY_ACTIONS.get(key)
            if action is not None and self.events.request(action, source):
                self.echo(f"[{key}] {_ACTION_WORDS[action]}")

        return on_key

    @staticmethod
    def unavailable_reason(mode: str) -> str | None:
        """Why `mode` cannot work here (None when it can), so a session can refuse it before connecting arms."""
        if mode == "terminal" and not TerminalKeyReader.available():
            return ("--keyboard=terminal needs stdin to be a terminal (it is a pipe or a file); run the command in "
                    "a terminal, or use --keyboard=none.")
        if mode == "pynput" and not PynputKeyListener.available():
            return ("--keyboard=pynput needs a desktop X display (DISPLAY is not set or pynput is missing); use "
                    "--keyboard=terminal, which works everywhere.")
        return None

    def start(self) -> list[str]:
        """Start the listeners the mode allows; returns their names (empty: no keyboard control)."""
        reason = self.unavailable_reason(self.mode)
        if reason is not None:
            raise RuntimeError(reason)
        started = []
        if self.mode in ("auto", "terminal") and TerminalKeyReader.available():
            self.listeners.append(TerminalKeyReader(self._handler("terminal")).start())
            started.append("terminal")
        if self.mode in ("auto", "pynput") and PynputKeyListener.available():
            try:
                self.listeners.append(PynputKeyListener(self._handler("pynput")).start())
                started.append("pynput")
            except Exception as exc:  # noqa: BLE001 - the terminal still works
                logger.warning("pynput keyboard listener unavailable (%s); terminal keys still work.", exc)
        return started

    def stop(self) -> None:
        for listener in reversed(self.listeners):
            listener.stop()
        self.listeners.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


_ACTION_WORDS = {NEXT: "next", RERECORD: "re-record this episode", STOP: "stop recording"}


class GripperSqueezeTrigger:
    """Hands-free 'next episode': two quick squeezes of the leader's gripper trigger (e.g. the Koch leader's).

    A grasp holds the trigger for a long time; a double squeeze is two short presses close together, which a
    grasp never is. `observe(action, now_s)` is fed every teleop action; it returns True when it fired.
    """

    def __init__(self, on_trigger: Callable[[], None], *, key: str = "gripper.pos", press_delta: float = 25.0,
                 max_press_s: float = 0.4, max_gap_s: float = 0.6):
        if press_delta <= 0 or max_press_s <= 0 or max_gap_s <= 0:
            raise ValueError("press_delta, max_press_s and max_gap_s must be positive")
        self.on_trigger = on_trigger
        self.key = key
        self.press_delta = press_delta
        self.max_press_s = max_press_s
        self.max_gap_s = max_gap_s
        self._rest: float | None = None
        self._pressed_at: float | None = None
        self._last_release_s: float | None = None

    def reset(self) -> None:
        """Forget the rest position (a new episode may start with the trigger elsewhere)."""
        self._rest = self._pressed_at = self._last_release_s = None

    def observe(self, action: dict, now_s: float) -> bool:
        value = action.get(self.key)
        if value is None:
            return False
        value = float(value)
        if self._rest is None:
            self._rest = value
        pressed = abs(value - self._rest) >= self.press_delta
        if pressed:
            if self._pressed_at is None:
                self._pressed_at = now_s
            return False
        if self._pressed_at is None:
            # Released: the rest position drifts slowly with the spring; follow it.
            self._rest += 0.05 * (value - self._rest)
            return False
        press_s, self._pressed_at = now_s - self._pressed_at, None
        if press_s > self.max_press_s:  # a grasp, not a click
            self._last_release_s = None
            return False
        if self._last_release_s is not None and now_s - self._last_release_s <= self.max_gap_s + self.max_press_s:
            self._last_release_s = None
            self.on_trigger()
            return True
        self._last_release_s = now_s
        return False
