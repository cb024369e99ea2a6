"""`lerobot-vla policy-server`: serve a policy's action chunks over TCP, for an arm whose computer is too weak to
run it (a Raspberry Pi next to the arm, the GPU in another machine).

    lerobot-vla policy-server --policy.path=outputs/train/flow_vla/checkpoints/last/pretrained_model \\
        [--policy.device=cuda] [--host 127.0.0.1] [--port 8765] [--allow_remote --token T] [--max_frame_mb 64]

Any LeRobot policy type loads (plugin policies too: LeRobot's third-party plugins are registered first), with its
saved processors, exactly as local inference loads it (LoadedPolicy), and each request runs the same
`predict_chunk`. The wire (wire.py) carries JSON headers and raw array bytes only; nothing is unpickled.

It listens on 127.0.0.1 unless told otherwise. Any other address needs `--allow_remote` and a shared token
(`--token`, or the LEROBOT_VLA_POLICY_TOKEN environment variable, which keeps it out of the process list); the
client sends the token in its hello. The token is not encryption: on an untrusted network, tunnel the port (e.g.
`ssh -L 8765:127.0.0.1:8765 gpu-host`) and keep the server on 127.0.0.1. A client that disconnects, or sends
a bad frame, ends only its own connection; requests are served one at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import hmac
import ipaddress
import logging
import os
import socket
import socketserver
import sys
import threading
import time

import numpy as np

from ..sim.features import TRAINING_ONLY_FEATURES
from . import wire
from .loaded_policy import LoadedPolicy

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
TOKEN_ENV = "LEROBOT_VLA_POLICY_TOKEN"
EXIT_OK, EXIT_USAGE = 0, 2
log = logging.getLogger(__name__)


class ServerConfigError(ValueError):
    """The server must not start with these options."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to any interface
        return False


def check_bind(host: str, allow_remote: bool, token: str | None) -> None:
    """Loopback needs nothing; any other address needs `allow_remote` and a token."""
    if is_loopback(host):
        return
    if not allow_remote:
        raise ServerConfigError(f"refusing to listen on {host}: only 127.0.0.1 is served unless --allow_remote is "
                                "given (with --token); or keep 127.0.0.1 and tunnel the port over ssh")
    if not token:
        raise ServerConfigError(f"refusing to listen on {host} without a token: give --token T or set {TOKEN_ENV} "
                                "(the client passes the same token)")


def serving_features(policy_cfg) -> dict:
    """Dataset features matching the policy's own input and output features: what `make_policy` needs when no
    robot is attached (images as (height, width, channels), like a recorded dataset's)."""
    from lerobot.configs.types import FeatureType

    features = {}
    for key, ft in {**policy_cfg.input_features, **policy_cfg.output_features}.items():
        if ft.type is FeatureType.VISUAL:
            channels, height, width = ft.shape
            features[key] = {"dtype": "video", "shape": (height, width, channels),
                             "names": ["height", "width", "channels"]}
        else:
            features[key] = {"dtype": "float32", "shape": tuple(ft.shape), "names": None}
    return features


def load_policy(policy_cfg) -> LoadedPolicy:
    """The checkpoint at `policy_cfg.pretrained_path` with its processors; the client supplies the robot type."""
    return LoadedPolicy.from_features(policy_cfg, serving_features(policy_cfg), robot_type="")


def _describe(features: dict) -> dict:
    return {key: {"type": ft.type.value, "shape": [int(dim) for dim in ft.shape]} for key, ft in features.items()}


class BadRequest(ValueError):
    pass


class PolicyServer:
    """Serves `loaded` (a LoadedPolicy) on (host, port); port 0 picks a free one (see `address`)."""

    def __init__(self, loaded: LoadedPolicy, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                 allow_remote: bool = False, token: str | None = None,
                 max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES, hello_timeout_s: float = 10.0):
        check_bind(host, allow_remote, token)
        self.loaded = loaded
        self.token = token or None
        self.max_frame_bytes = max_frame_bytes
        self.hello_timeout_s = hello_timeout_s
        self._lock = threading.Lock()  # one inference (or reset) at a time, whoever asks
        self._thread: threading.Thread | None = None
        config = loaded.policy.config
        self.input_features = dict(config.input_features)
        self.action_dim = int(config.output_features["action"].shape[0]) if "action" in config.output_features \
            else None
        self.welcome = {"policy_type": str(getattr(config, "type", type(loaded.policy).__name__)),
                        "supports_rtc": loaded.supports_rtc(),
                        "chunk_size": getattr(config, "chunk_size", None),
                        "n_action_steps": loaded.actions_per_chunk(),
                        "input_features": _describe(config.input_features),
                        "output_features": _describe(config.output_features)}
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                server._serve_connection(self.request, self.client_address)

        class TCPServer(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        self._server = TCPServer((host, port), Handler)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return host, port

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> PolicyServer:
        """Serve in a background thread (tests, notebooks)."""
        self._thread = threading.Thread(target=self.serve_forever, name="policy-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one connection --------------------------------------------------------------------------------------------

    def _serve_connection(self, sock: socket.socket, peer) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        who = f"{peer[0]}:{peer[1]}"
        try:
            sock.settimeout(self.hello_timeout_s)
            if not self._handshake(sock, who):
                return
            sock.settimeout(None)
            log.info("policy server: %s connected", who)
            while True:
                try:
                    message = wire.read_message(sock, self.max_frame_bytes)
                except wire.WireError as error:
                    log.warning("policy server: refused a frame from %s: %s", who, error)
                    self._send(sock, wire.error_message(error.code, str(error)))
                    if not error.in_sync:
                        return
                    continue
                self._send(sock, self._answer(message))
        except wire.ConnectionClosed:
            log.info("policy server: %s disconnected", who)
        except (OSError, wire.WireError) as error:  # a reset connection, a hello that never came, ...
            log.info("policy server: connection from %s ended: %s", who, error)

    def _handshake(self, sock: socket.socket, who: str) -> bool:
        try:
            hello = wire.read_message(sock, self.max_frame_bytes)
        except wire.WireError as error:
            self._send(sock, wire.error_message(error.code, str(error)))
            log.warning("policy server: refused %s: %s", who, error)
            return False
        if hello.type != "hello":
            self._send(sock, wire.error_message("unexpected", f"the first message must be hello, not {hello.type}"))
            return False
        if self.token is not None:
            given = hello.meta.get("token")
            if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self.token.encode()):
                log.warning("policy server: refused %s: wrong or missing token", who)
                self._send(sock, wire.error_message("unauthorized", "wrong or missing token", hello.id))
                return False
        self._send(sock, wire.Message("welcome", dict(self.welcome), id=hello.id))
        return True

    def _send(self, sock: socket.socket, message: wire.Message) -> None:
        try:
            wire.send_message(sock, message, self.max_frame_bytes)
        except OSError:
            pass  # the peer is gone; the read that follows ends the connection

    def _answer(self, message: wire.Message) -> wire.Message:
        handled_from = time.perf_counter()
        if message.type == "reset":
            with self._lock:
                self.loaded.reset()
            return wire.Message("reset_done", id=message.id)
        if message.type != "infer":
            return wire.error_message("unexpected", f"a client may send reset or infer here, not {message.type}",
                                      message.id)
        try:
            frame, leftover = self._request_arrays(message)
        except BadRequest as error:
            return wire.error_message("bad_request", str(error), message.id)
        robot_type = message.meta.get("robot_type")
        loaded = dataclasses.replace(self.loaded, robot_type=robot_type) if robot_type else self.loaded
        try:
            with self._lock:
                started = time.perf_counter()
                actions, normalized = loaded.predict_chunk(frame, message.meta["task"],
                                                           message.meta.get("inference_delay"), leftover)
                inference_s = time.perf_counter() - started
        except Exception as error:  # the policy failed on this request; the server goes on
            log.exception("policy server: inference failed")
            return wire.error_message("inference_failed", f"{type(error).__name__}: {error}", message.id)
        return wire.Message("chunk", {"inference_s": inference_s, "handled_s": time.perf_counter() - handled_from},
                            {"actions": actions.astype(np.float32), "normalized": normalized.astype(np.float32)},
                            id=message.id)

    def _request_arrays(self, message: wire.Message) -> tuple[dict, np.ndarray | None]:
        """The observation frame and RTC leftover, checked against the policy's features."""
        from lerobot.configs.types import FeatureType

        arrays = dict(message.arrays)
        leftover = arrays.pop("prev_chunk_left_over", None)
        unknown = sorted(set(arrays) - set(self.input_features))
        missing = sorted(set(self.input_features) - set(arrays) - TRAINING_ONLY_FEATURES)
        if unknown or missing:
            raise BadRequest(f"observation arrays do not match the policy's inputs (unknown: {unknown}, missing: "
                             f"{missing})")
        frame = {}
        for key, value in arrays.items():
            ft = self.input_features[key]
            if ft.type is FeatureType.VISUAL:
                if value.dtype != np.uint8 or value.ndim != 3 or value.shape[2] != ft.shape[0]:
                    raise BadRequest(f"{key} must be a (height, width, {ft.shape[0]}) uint8 image, got "
                                     f"{value.dtype} {list(value.shape)}")
                frame[key] = value
            else:
                if value.dtype.kind != "f" or tuple(value.shape) != tuple(ft.shape):
                    raise BadRequest(f"{key} must be float of shape {list(ft.shape)}, got {value.dtype} "
                                     f"{list(value.shape)}")
                if not np.isfinite(value).all():
                    raise BadRequest(f"{key} has non-finite values")
                frame[key] = value.astype(np.float32)
        if leftover is not None:
            if not self.welcome["supports_rtc"]:
                raise BadRequest(f"prev_chunk_left_over was sent but {self.welcome['policy_type']} does not support "
                                 "real-time chunking")
            chunk = self.welcome["chunk_size"]
            if (leftover.dtype.kind != "f" or leftover.ndim != 2 or leftover.shape[1] != self.action_dim
                    or (chunk is not None and leftover.shape[0] > chunk) or not np.isfinite(leftover).all()):
                raise BadRequest(f"prev_chunk_left_over must be finite float (<= {chunk}, {self.action_dim}), got "
                                 f"{leftover.dtype} {list(leftover.shape)}")
            leftover = leftover.astype(np.float32)
        elif message.meta.get("inference_delay") is not None:
            raise BadRequest("inference_delay was sent without prev_chunk_left_over")
        return frame, leftover


# -- command line -------------------------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    """`--policy.path=DIR` and `--policy.<field>` are LeRobot-style; the rest are parsed in `run`."""
    from lerobot_vla_plugin.workflow.draccus_options import pass_options_through

    pass_options_through(parser, "server_options")


def _options(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="lerobot-vla policy-server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--allow_remote", "--allow-remote", action="store_true")
    parser.add_argument("--token", default=None, help=f"shared token (default: ${TOKEN_ENV})")
    parser.add_argument("--max_frame_mb", "--max-frame-mb", type=float, default=64.0)
    options, rest = parser.parse_known_args(argv)
    stray = [arg for arg in rest if not arg.startswith("--policy.")]
    if stray:
        parser.error(f"unrecognised arguments: {' '.join(stray)}")
    if options.token is None:
        options.token = os.environ.get(TOKEN_ENV) or None
    return options, rest


def run(args: argparse.Namespace) -> int:
    from lerobot.configs import parser
    from lerobot.utils.utils import init_logging

    from lerobot_vla_plugin.workflow.draccus_options import register_config_types, split_policy_path

    init_logging()
    options, policy_args = _options(args.server_options)
    try:
        check_bind(options.host, options.allow_remote, options.token)
    except ServerConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not parser.get_path_arg("policy", policy_args):
        print("error: give --policy.path=DIR (a LeRobot checkpoint's pretrained_model folder)", file=sys.stderr)
        return EXIT_USAGE
    register_config_types()
    policy_cfg, _ = split_policy_path(policy_args)
    policy_path = policy_cfg.pretrained_path
    server = PolicyServer(load_policy(policy_cfg), options.host, options.port, allow_remote=options.allow_remote,
                          token=options.token, max_frame_bytes=int(options.max_frame_mb * 1024 * 1024))
    host, port = server.address
    print(f"Serving {server.welcome['policy_type']} from {policy_path} on {host}:{port}"
          f"{' (token required)' if server.token else ''}; Ctrl-C stops.", flush=True)
    try:
        server.serve_forever()
    finally:
        server.close()
    return EXIT_OK
