"""`RemotePolicy`: the chunks of a policy that runs on a policy server (policy_server.py), for an
`AsyncPolicyRunner` on a computer too weak to run it.

It stands where a `LoadedPolicy` stands in the runner: the robot-side conversions (frame, robot_action) happen
here, from the robot's features; `predict_chunk` sends the frame (only the policy's inputs), the task and RTC's
leftover over the wire and returns the server's chunk. The runner times the whole call, so its delay estimate
learns the round trip, network included. A server-side failure raises `RemoteError`, which the runner reports
like any inference failure (the episode stops, the arm holds).
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np

from . import wire
from .loaded_policy import RobotPolicyIO, robot_dataset_features


class RemoteError(RuntimeError):
    """The policy server refused a request or could not be reached. `code`: the server's error code."""

    def __init__(self, message: str, code: str = "unreachable"):
        super().__init__(message)
        self.code = code


def parse_address(address: str) -> tuple[str, int]:
    """'HOST:PORT' (IPv6 as '[::1]:PORT') -> (host, port)."""
    host, sep, port = address.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{address!r} is not HOST:PORT (e.g. 127.0.0.1:8765)")
    return host, int(port)


class RemotePolicy(RobotPolicyIO):
    """A connection to a policy server. `use_robot(robot)` (or `features`/`robot_type`) says which robot the
    observations come from; `timeout_s` bounds every exchange (the runner's watchdog usually fires first)."""

    def __init__(self, address: str, token: str | None = None, *, features: dict | None = None,
                 robot_type: str = "", connect_timeout_s: float = 10.0, timeout_s: float = 120.0,
                 max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES):
        self.address = address
        self.features = features or {}
        self.robot_type = robot_type
        self.timeout_s = timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.round_trips_s: list[float] = []
        self.server_inference_s: list[float] = []
        self.server_handled_s: list[float] = []  # inference plus the server's checks and encoding
        self._lock = threading.Lock()
        self._next_id = 1
        self._broken: str | None = None
        host, port = parse_address(address)
        try:
            self._sock = socket.create_connection((host, port), timeout=connect_timeout_s)
        except OSError as error:
            raise RemoteError(f"cannot connect to the policy server at {address}: {error}") from error
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.settimeout(timeout_s)
        try:
            welcome = self._exchange(wire.Message("hello", {"token": token, "client": "lerobot-vla"}), "welcome")
        except BaseException:
            self.close()
            raise
        self.info = welcome.meta
        self.policy_type = self.info["policy_type"]

    def use_robot(self, robot) -> RemotePolicy:
        self.features = robot_dataset_features(robot)
        self.robot_type = robot.name
        return self

    # -- what the runner calls -------------------------------------------------------------------------------------

    def supports_rtc(self) -> bool:
        return bool(self.info["supports_rtc"])

    def name(self) -> str:
        return f"{self.policy_type} at {self.address}"

    def actions_per_chunk(self) -> int | None:
        """The served policy's `n_action_steps` (None from a server that does not say)."""
        return self.info.get("n_action_steps")

    def image_shapes(self) -> dict[str, tuple[int, ...]]:
        """The policy's cameras and their (channels, height, width), as its config lists them."""
        return {key: tuple(ft["shape"]) for key, ft in self.info["input_features"].items() if ft["type"] == "VISUAL"}

    def reset(self) -> None:
        self._exchange(wire.Message("reset"), "reset_done")

    def predict_chunk(self, frame: dict, task: str, inference_delay: int | None = None,
                      prev_chunk_left_over=None) -> tuple[np.ndarray, np.ndarray]:
        inputs = self.info["input_features"]
        arrays = {key: np.asarray(value) for key, value in frame.items() if key in inputs}
        if prev_chunk_left_over is not None:
            arrays["prev_chunk_left_over"] = np.asarray(prev_chunk_left_over, dtype=np.float32)
        meta = {"task": task, "robot_type": self.robot_type or None, "sent_unix_s": time.time()}
        if prev_chunk_left_over is not None:
            meta["inference_delay"] = None if inference_delay is None else int(inference_delay)
        started = time.perf_counter()
        answer = self._exchange(wire.Message("infer", meta, arrays), "chunk")
        self.round_trips_s.append(time.perf_counter() - started)
        self.server_inference_s.append(float(answer.meta["inference_s"]))
        self.server_handled_s.append(float(answer.meta["handled_s"]))
        return answer.arrays["actions"], answer.arrays["normalized"]

    def stats(self) -> dict:
        """Round trips, the server's inference, and the overhead (round trip less inference: the wire, the
        network and the server's handling), in seconds: p50 / p90."""
        def pct(values, q):
            return float(np.percentile(values, q)) if values else None

        overhead = [rt - inf for rt, inf in zip(self.round_trips_s, self.server_inference_s)]
        transport = [rt - handled for rt, handled in zip(self.round_trips_s, self.server_handled_s)]
        return {"address": self.address, "policy_type": self.policy_type, "requests": len(self.round_trips_s),
                "round_trip_p50_s": pct(self.round_trips_s, 50), "round_trip_p90_s": pct(self.round_trips_s, 90),
                "server_inference_p50_s": pct(self.server_inference_s, 50),
                "server_inference_p90_s": pct(self.server_inference_s, 90),
                "overhead_p50_s": pct(overhead, 50), "overhead_p90_s": pct(overhead, 90),
                "transport_p50_s": pct(transport, 50), "transport_p90_s": pct(transport, 90)}

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> RemotePolicy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------------------

    def _exchange(self, message: wire.Message, expected: str) -> wire.Message:
        """Send `message`, return its answer (of type `expected`); one exchange at a time on the connection."""
        with self._lock:
            if self._broken is not None:
                raise RemoteError(f"the connection to the policy server at {self.address} is closed: {self._broken}")
            message.id = self._next_id
            self._next_id += 1
            try:
                wire.send_message(self._sock, message, self.max_frame_bytes)
                answer = wire.read_message(self._sock, self.max_frame_bytes)
            except (OSError, wire.WireError) as error:  # a late answer would come out of turn: never reuse it
                self._broken = f"{type(error).__name__}: {error}"
                self.close()
                raise RemoteError(f"the policy server at {self.address} did not answer {message.type}: "
                                  f"{self._broken}", getattr(error, "code", "unreachable")) from error
        if answer.type == "error":
            raise RemoteError(f"the policy server at {self.address} refused {message.type}: "
                              f"{answer.meta['message']} ({answer.meta['code']})", answer.meta["code"])
        if answer.type != expected or answer.id != message.id:
            raise RemoteError(f"the policy server at {self.address} answered {message.type} #{message.id} with "
                              f"{answer.type} #{answer.id}", "unexpected")
        return answer
