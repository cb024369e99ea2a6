"""The virtual arm's unix-socket service: camera frames, episode control and task success for other processes.

When `lerobot-vla emulate --physics` runs in one process and stock `lerobot-record` in another, the robot
reaches the arm through its servo ptys and the cameras reach the scene through this socket. Frames are
rendered on request, so in lockstep mode a frame always shows the state of the current control tick.

Wire format, one request at a time per connection: the client sends one JSON object per line,
`{"op": ...}`; the server answers one JSON line, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`,
and for a frame the header carries `nbytes`, followed by that many bytes of RGB uint8 pixels in
(height, width, 3) order.

Ops: `info` (cameras, lockstep, control period), `frame` (camera, width, height), `status` (task,
episode, is_success, ...), `new_episode` (optional task, seed). Importing this module loads no MuJoCo.
"""

from __future__ import annotations

import glob
import json
import os
import socket
import socketserver
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

SOCKET_DIR_NAME = "lerobot-vla-sim"
SOCKET_SUFFIX = ".sock"
_MAX_LINE_BYTES = 1 << 16


def default_socket_dir() -> Path:
    """Where emulators put their sockets, so cameras can be discovered (`find_cameras`)."""
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()) / SOCKET_DIR_NAME


def default_socket_path() -> Path:
    return default_socket_dir() / f"so101-{os.getpid()}{SOCKET_SUFFIX}"


def discover_sockets() -> list[str]:
    return sorted(glob.glob(str(default_socket_dir() / f"*{SOCKET_SUFFIX}")))


class RemoteArmError(RuntimeError):
    """The virtual arm's server answered a request with an error."""


# -- server -----------------------------------------------------------------------------------------------------

class VirtualArmServer:
    """Serves a backend object's `info()`, `frame(camera, width, height)`, `status()` and `new_episode(...)`.

    `frame` returns (image, sim_time_s); the others return JSON-able dicts.
    """

    def __init__(self, backend, path: str | os.PathLike | None = None):
        self.backend = backend
        self.path = str(path or default_socket_path())
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        if os.path.exists(self.path):
            _remove_if_stale(self.path)
        handlers: dict[str, Callable[[dict], tuple[dict, bytes | None]]] = {
            "info": lambda req: (backend.info(), None),
            "status": lambda req: (backend.status(), None),
            "new_episode": lambda req: (backend.new_episode(task=req.get("task"), seed=req.get("seed")) or {}, None),
            "frame": self._frame,
        }

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    line = self.rfile.readline(_MAX_LINE_BYTES)
                    if not line:
                        return
                    payload = None
                    try:
                        request = json.loads(line)
                        op = request.get("op")
                        if op not in handlers:
                            raise ValueError(f"unknown op {op!r}; expected one of {sorted(handlers)}")
                        header, payload = handlers[op](request)
                        header = {"ok": True, **header}
                    except Exception as exc:  # reported to the client, the server keeps serving
                        header = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    try:
                        self.wfile.write(json.dumps(header).encode() + b"\n")
                        if payload is not None:
                            self.wfile.write(payload)
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(self.path, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"sim-socket {self.path}", daemon=True)

    def _frame(self, request: dict) -> tuple[dict, bytes]:
        image, sim_time_s = self.backend.frame(str(request["camera"]), int(request["width"]), int(request["height"]))
        image = np.ascontiguousarray(image, dtype=np.uint8)
        header = {"height": image.shape[0], "width": image.shape[1], "sim_time_s": sim_time_s,
                  "nbytes": image.nbytes}
        return header, image.tobytes()

    def start(self) -> VirtualArmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _remove_if_stale(path: str) -> None:
    """A socket file left by a crashed emulator is removed; one with a live server is an error."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise FileExistsError(f"another virtual arm is already serving {path}; stop it or choose another socket path")


# -- client -----------------------------------------------------------------------------------------------------

class RemoteVirtualArm:
    """Client of `VirtualArmServer`: the same `info/frame/status/new_episode` calls, over the socket.

    One request at a time (a lock serializes threads); open one client per camera for parallel frames.
    A request that times out or breaks off mid-reply drops the connection and the next request opens a fresh
    one: the server may still answer the old request, and on a new connection that late reply cannot be
    read as the answer to a later one.
    """

    def __init__(self, path: str | os.PathLike, timeout_s: float = 10.0):
        self.path = str(path)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._file = None
        self._closed = False
        self._connect()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout_s)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise ConnectionError(
                f"no virtual arm is serving {self.path} ({exc.strerror}); start one with "
                "`lerobot-vla emulate --arm so101 --physics` and use the camera socket path it prints"
            ) from exc
        self._sock, self._file = sock, sock.makefile("rb")

    def _disconnect(self) -> None:
        sock, file, self._sock, self._file = self._sock, self._file, None, None
        try:
            if file is not None:
                file.close()
        finally:
            if sock is not None:
                sock.close()

    def _call(self, request: dict) -> tuple[dict, bytes | None]:
        with self._lock:
            if self._closed:
                raise ConnectionError(f"the client of the virtual arm at {self.path} is closed")
            if self._sock is None:
                self._connect()
            try:
                header, payload = self._exchange(self._sock, self._file, request)
            except TimeoutError as exc:
                self._disconnect()
                raise TimeoutError(
                    f"the virtual arm at {self.path} did not answer {request['op']!r} within {self.timeout_s} s; "
                    "the next request reconnects"
                ) from exc
            except BaseException:
                self._disconnect()  # the reply stream is in an unknown state
                raise
        if not header.pop("ok", False):
            raise RemoteArmError(f"virtual arm at {self.path}: {header.get('error', 'unknown error')}")
        return header, payload

    def _exchange(self, sock: socket.socket, file, request: dict) -> tuple[dict, bytes | None]:
        sock.sendall(json.dumps(request).encode() + b"\n")
        line = file.readline(_MAX_LINE_BYTES)
        if not line:
            raise ConnectionError(f"the virtual arm at {self.path} closed the connection")
        header = json.loads(line)
        payload = None
        if header.get("ok") and "nbytes" in header:
            payload = file.read(header["nbytes"])
            if len(payload) != header["nbytes"]:
                raise ConnectionError(f"the virtual arm at {self.path} closed the connection mid-frame")
        return header, payload

    def info(self) -> dict:
        return self._call({"op": "info"})[0]

    def status(self) -> dict:
        return self._call({"op": "status"})[0]

    def new_episode(self, task: str | None = None, seed: int | None = None) -> dict:
        return self._call({"op": "new_episode", "task": task, "seed": seed})[0]

    def frame(self, camera: str, width: int, height: int) -> tuple[np.ndarray, float]:
        header, payload = self._call({"op": "frame", "camera": camera, "width": width, "height": height})
        image = np.frombuffer(bytearray(payload), dtype=np.uint8).reshape(header["height"], header["width"], 3)
        return image, float(header["sim_time_s"])

    def is_success(self) -> bool:
        return bool(self.status()["is_success"])

    def close(self) -> None:
        """Not under the request lock: closing the socket also ends a request that is waiting for a reply."""
        self._closed = True
        self._disconnect()

    def __enter__(self) -> RemoteVirtualArm:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
