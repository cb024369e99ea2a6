"""Remote inference: the wire format, the policy server and the runner's remote chunk source, on real sockets
bound to 127.0.0.1 only, with tiny real checkpoints (flow_vla, a plugin policy, and LeRobot's ACT) written here."""

from __future__ import annotations

import ast
import json
import logging
import pickle
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import lerobot_robot_vla_plugin  # noqa: F401  (registers our robot, camera and policy like plugin discovery)
from lerobot_vla_plugin import cli
from lerobot_vla_plugin.rollout import policy_server, remote_client, wire
from lerobot_vla_plugin.rollout.policy_server import PolicyServer, ServerConfigError, check_bind, load_policy
from lerobot_vla_plugin.rollout.remote_client import RemoteError, RemotePolicy, parse_address

LOOPBACK = "127.0.0.1"
TOKEN = "a-shared-token-for-tests"


@pytest.fixture(autouse=True)
def keep_log_handlers(monkeypatch):
    """A command installs a log handler on the test's captured stderr; the server thread logs after it closes."""
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))


def load_checkpoint(path):
    from lerobot.configs.policies import PreTrainedConfig

    cfg = PreTrainedConfig.from_pretrained(path, cli_overrides=["--device=cpu"])
    cfg.pretrained_path = path
    return load_policy(cfg)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from workflow.test_evaluate import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("remote")
    return {kind: write_tiny_checkpoint(kind, root / kind) for kind in ("flow_vla", "act")}


@pytest.fixture(scope="module")
def server(checkpoints):
    """A flow_vla server on a free loopback port, with a token."""
    with PolicyServer(load_checkpoint(checkpoints["flow_vla"]), LOOPBACK, 0, token=TOKEN) as running:
        yield running


def address(running: PolicyServer) -> str:
    host, port = running.address
    return f"{host}:{port}"


def observation_frame(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"observation.state": rng.normal(size=6).astype(np.float32),
            "observation.images.front": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)}


# -- the wire ------------------------------------------------------------------------------------------------------

def raw_frame(header: dict, payload: bytes = b"") -> bytes:
    header_bytes = json.dumps(header).encode()
    return struct.pack("<4sIQ", wire.MAGIC, len(header_bytes), len(payload)) + header_bytes + payload


def decode_bytes(frame: bytes, max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES) -> wire.Message:
    """Read one frame through a real (local, unconnected) socket pair, as the server does."""
    left, right = socket.socketpair()
    with left, right:
        left.sendall(frame)
        left.shutdown(socket.SHUT_WR)
        return wire.read_message(right, max_frame_bytes)


def test_arrays_cross_the_wire_bit_exact_in_little_endian():
    arrays = {"observation.state": np.array([1.5, -2.0, np.pi], dtype=np.float32),
              "observation.images.front": np.arange(24, dtype=np.uint8).reshape(2, 4, 3),
              "observation.mask": np.array([[True, False]]),
              "observation.big_endian": np.arange(3, dtype=">f8"),
              "observation.empty": np.zeros((0, 4), dtype=np.int64)}
    frame = wire.encode(wire.Message("infer", {"task": "pick", "inference_delay": 2}, arrays, id=7))
    header_len = struct.unpack_from("<I", frame, 4)[0]
    assert frame[:4] == wire.MAGIC and json.loads(frame[16:16 + header_len])["id"] == 7
    message = decode_bytes(frame)
    assert (message.type, message.id, message.meta) == ("infer", 7, {"task": "pick", "inference_delay": 2})
    for name, value in arrays.items():
        got = message.arrays[name]
        assert got.dtype == value.dtype.newbyteorder("=") and got.shape == value.shape
        assert np.array_equal(got, value) and got.flags.writeable
    # The payload is the arrays' raw little-endian bytes, in order.
    assert frame.endswith(np.zeros((0, 4), dtype="<i8").tobytes())
    assert np.arange(3, dtype="<f8").tobytes() in frame


def good_header(**changes) -> dict:
    header = {"type": "infer", "version": wire.PROTOCOL_VERSION, "id": 1, "meta": {"task": "pick"},
              "arrays": [{"name": "observation.state", "dtype": "float32", "shape": [2]}]}
    header.update(changes)
    return header


@pytest.mark.parametrize("frame, code, complaint", [
    (raw_frame({**good_header(), "extra": 1}, bytes(8)), "malformed", "unknown: ['extra']"),
    (raw_frame(good_header(meta={"task": "pick", "speed": 2}), bytes(8)), "malformed", "unknown field(s) ['speed']"),
    (raw_frame(good_header(meta={}), bytes(8)), "malformed", "missing field(s) ['task']"),
    (raw_frame(good_header(version=2), bytes(8)), "version", "protocol version 2 is not supported"),
    (raw_frame(good_header(type="exec"), bytes(8)), "unknown_type", "unknown message type 'exec'"),
    (raw_frame(good_header(), bytes(7)), "size_mismatch", "make 8 bytes but the payload has 7"),
    (raw_frame(good_header(arrays=[{"name": "observation.x", "dtype": "object", "shape": [1]}]), bytes(8)),
     "bad_dtype", "dtype 'object'"),
    (raw_frame(good_header(arrays=[{"name": "weights", "dtype": "uint8", "shape": [1]}]), bytes(1)),
     "malformed", "array 'weights' is not one this message carries"),
    (raw_frame(good_header(arrays=[{"name": "observation.x", "dtype": "uint8", "shape": [-1]}])), "malformed",
     "invalid shape"),
    (struct.pack("<4sIQ", wire.MAGIC, 10, 0) + b'{"id":NaN}', "malformed", "not valid JSON"),
    (struct.pack("<4sIQ", wire.MAGIC, 1, 2**40), "too_large", "over the limit"),
    (pickle.dumps({"observation.state": np.zeros(2)}), "malformed", "looks like a pickle"),
])
def test_malformed_frames_are_refused_with_a_clear_error(frame, code, complaint):
    with pytest.raises(wire.WireError) as caught:
        decode_bytes(frame)
    assert caught.value.code == code and complaint in str(caught.value)
    # Only a frame whose end is unknown (bad magic, too large) takes the stream out of sync.
    assert caught.value.in_sync == (code not in ("too_large",) and b"LVWF" == frame[:4])


def test_a_sender_cannot_encode_what_a_receiver_refuses():
    with pytest.raises(wire.WireError, match="dtype object"):
        wire.encode(wire.Message("infer", {"task": "x"}, {"observation.state": np.array([object()])}))
    with pytest.raises(wire.WireError, match="unknown field"):
        wire.encode(wire.Message("chunk", {"inference_s": 0.1, "handled_s": 0.1, "pickle": "x"}))
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.encode(wire.Message("infer", {"task": "x"}, {"observation.state": np.zeros(1000)}), max_frame_bytes=1000)


def test_no_module_of_the_remote_path_can_unpickle():
    """Read the sources: nothing imports pickle (or a relative), calls a loader that unpickles, or evaluates."""
    forbidden = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib", "copyreg"}
    for module in (wire, policy_server, remote_client):
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            where = f"{module.__name__} line {getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                assert not {alias.name.split(".")[0] for alias in node.names} & forbidden, where
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] not in forbidden, where
            elif isinstance(node, ast.Name):
                assert node.id not in forbidden | {"eval", "exec", "__import__"}, where
            elif isinstance(node, ast.Attribute):
                assert node.attr not in {"load", "loads", "Unpickler", "fromfile"} or (
                    isinstance(node.value, ast.Name) and node.value.id == "json"), where
            elif isinstance(node, ast.keyword):
                assert node.arg != "allow_pickle", where


# -- binding and the token -----------------------------------------------------------------------------------------

def test_only_loopback_is_served_without_the_flag_and_a_token(monkeypatch, capsys):
    monkeypatch.delenv(policy_server.TOKEN_ENV, raising=False)
    check_bind("127.0.0.1", allow_remote=False, token=None)
    check_bind("::1", allow_remote=False, token=None)
    for host in ("0.0.0.0", "192.168.1.20", "gpu-host.local"):
        with pytest.raises(ServerConfigError, match="--allow_remote"):
            check_bind(host, allow_remote=False, token=TOKEN)
        with pytest.raises(ServerConfigError, match="without a token"):
            check_bind(host, allow_remote=True, token=None)
    # The command refuses before it loads a policy or opens a socket.
    assert cli.main(["policy-server", "--policy.path=/nonexistent", "--host", "0.0.0.0"]) == 2
    assert "only 127.0.0.1 is served unless --allow_remote" in capsys.readouterr().err
    assert cli.main(["policy-server", "--policy.path=/nonexistent", "--host", "0.0.0.0", "--allow_remote"]) == 2
    assert "without a token" in capsys.readouterr().err
    with pytest.raises(ServerConfigError):
        PolicyServer(None, "0.0.0.0", 0, allow_remote=True, token="")


def test_a_wrong_or_missing_token_is_refused_and_the_right_one_is_served(server):
    for token in ("not-the-token", None, TOKEN[:-1]):
        with pytest.raises(RemoteError, match="wrong or missing token") as caught:
            RemotePolicy(address(server), token)
        assert caught.value.code == "unauthorized"
    with RemotePolicy(address(server), TOKEN) as remote:
        assert remote.policy_type == "flow_vla" and remote.supports_rtc()
        assert remote.image_shapes() == {"observation.images.front": (3, 32, 32)}


# -- round trips ---------------------------------------------------------------------------------------------------

def test_a_round_trip_returns_the_chunk_local_inference_computes(server, checkpoints):
    """Same checkpoint, observation and noise: the server runs in this process, so seeding torch's global
    generator before each call fixes flow_vla's sampling noise on both sides."""
    local = load_checkpoint(checkpoints["flow_vla"])
    frame = observation_frame(1)
    leftover = np.random.default_rng(2).normal(size=(5, 6)).astype(np.float32)
    with RemotePolicy(address(server), TOKEN) as remote:
        for delay, rest in ((None, None), (2, leftover)):  # plain, then continuing a previous chunk (RTC)
            torch.manual_seed(0)
            want_actions, want_normalized = local.predict_chunk(frame, "pick the red cube", delay, rest)
            torch.manual_seed(0)
            got_actions, got_normalized = remote.predict_chunk(frame, "pick the red cube", delay, rest)
            assert got_actions.shape == want_actions.shape == (8, 6)
            np.testing.assert_allclose(got_actions, want_actions, rtol=0, atol=1e-6)
            np.testing.assert_allclose(got_normalized, want_normalized, rtol=0, atol=1e-6)
        torch.manual_seed(1)
        other, _ = remote.predict_chunk(frame, "pick the red cube")
        assert not np.allclose(other, want_actions)  # the noise matters: the match above is not vacuous
        assert remote.stats()["requests"] == 3
        assert all(rt >= inf for rt, inf in zip(remote.round_trips_s, remote.server_inference_s))


def test_any_lerobot_policy_type_is_served(checkpoints):
    local = load_checkpoint(checkpoints["act"])
    frame = observation_frame(3)
    with PolicyServer(load_checkpoint(checkpoints["act"]), LOOPBACK, 0) as running, \
            RemotePolicy(address(running)) as remote:
        assert remote.policy_type == "act" and not remote.supports_rtc()
        np.testing.assert_allclose(remote.predict_chunk(frame, "")[0], local.predict_chunk(frame, "")[0],
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("policy_type", ["flow_vla", "act"])
def test_a_policy_trained_on_the_virtual_arms_object_positions_is_served_without_them(policy_type, tmp_path):
    """LeRobot lists every observation feature of the training data among a policy's inputs; the virtual arm's
    object positions are a training target only, and a real arm has no such sensor."""
    from workflow.test_evaluate import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(policy_type, tmp_path / policy_type, object_positions=True)
    frame = observation_frame(4)
    with PolicyServer(load_checkpoint(checkpoint), LOOPBACK, 0) as running, RemotePolicy(address(running)) as remote:
        actions, _ = remote.predict_chunk(frame, "pick the red cube")
    assert actions.shape == (8, 6) and np.isfinite(actions).all()


def exchange(sock: socket.socket, frame: bytes) -> wire.Message:
    sock.sendall(frame)
    return wire.read_message(sock)


def hello(sock: socket.socket) -> None:
    assert exchange(sock, wire.encode(wire.Message("hello", {"token": TOKEN}))).type == "welcome"


def test_bad_frames_and_requests_are_refused_and_the_server_keeps_serving(server, monkeypatch):
    unpickled = []
    for name in ("loads", "load"):
        monkeypatch.setattr(pickle, name, lambda *args, **kwargs: unpickled.append(args))
    host, port = server.address
    infer = wire.encode(wire.Message("infer", {"task": "pick"}, observation_frame()))
    with socket.create_connection((host, port), timeout=30) as sock:
        hello(sock)
        # Well framed but refused: the connection stays usable.
        answer = exchange(sock, raw_frame({**good_header(), "exec": "rm -rf /"}, bytes(8)))
        assert answer.type == "error" and answer.meta["code"] == "malformed" and "exec" in answer.meta["message"]
        wrong_shape = {**observation_frame(), "observation.state": np.zeros(4, dtype=np.float32)}
        answer = exchange(sock, wire.encode(wire.Message("infer", {"task": "pick"}, wrong_shape)))
        assert answer.meta["code"] == "bad_request" and "shape [6]" in answer.meta["message"]
        answer = exchange(sock, wire.encode(wire.Message("infer", {"task": "pick"}, {
            "observation.state": np.zeros(6, dtype=np.float32)})))
        assert answer.meta["code"] == "bad_request" and "missing: ['observation.images.front']" in answer.meta["message"]
        answer = exchange(sock, raw_frame(good_header(arrays=[{"name": "observation.state", "dtype": "object",
                                                               "shape": [1]}]), pickle.dumps(np.zeros(1))))
        assert answer.meta["code"] == "bad_dtype"
        assert exchange(sock, infer).type == "chunk"
        # A pickle where a frame should be: refused, and this connection (whose stream is lost) closed.
        answer = exchange(sock, pickle.dumps({"observation.state": np.zeros(6)}))
        assert answer.meta["code"] == "malformed" and "pickle" in answer.meta["message"]
        assert sock.recv(1) == b""
    with socket.create_connection((host, port), timeout=30) as sock:
        hello(sock)
        answer = exchange(sock, struct.pack("<4sIQ", wire.MAGIC, 10, 10**12))  # 1 TB announced: never read
        assert answer.meta["code"] == "too_large" and "over the limit" in answer.meta["message"]
        assert sock.recv(1) == b""
    with socket.create_connection((host, port), timeout=30) as sock:  # no hello first
        answer = exchange(sock, infer)
        assert answer.meta["code"] == "unexpected" and sock.recv(1) == b""
    with socket.create_connection((host, port), timeout=30) as sock:  # gone in the middle of a frame
        hello(sock)
        sock.sendall(infer[:30])
    with RemotePolicy(address(server), TOKEN) as remote:  # still serving
        actions, _ = remote.predict_chunk(observation_frame(), "pick")
        assert actions.shape == (8, 6) and np.isfinite(actions).all()
    assert unpickled == []


def test_a_server_failure_reaches_the_client_as_a_clear_error(server):
    with RemotePolicy(address(server), TOKEN) as remote:
        with pytest.raises(RemoteError, match="does not match|unknown") as caught:
            remote.info = {**remote.info, "input_features": {**remote.info["input_features"],
                                                             "observation.extra": {"type": "STATE", "shape": [1]}}}
            remote.predict_chunk({**observation_frame(), "observation.extra": np.zeros(1, np.float32)}, "pick")
        assert caught.value.code == "bad_request"
        actions, _ = remote.predict_chunk(observation_frame(), "pick")  # the same connection goes on
        assert actions.shape == (8, 6)


# -- the evaluator through a policy server -------------------------------------------------------------------------

def test_eval_with_a_remote_policy_completes_a_lockstep_episode(server, tmp_path, capsys):
    out = tmp_path / "eval"
    code = cli.main(["eval", "--eval.policy_server", address(server), "--eval.token", TOKEN, "--virtual", "so101",
                     "--eval.inference", "async", "--eval.episodes", "1", "--eval.episode_time_s", "1",
                     f"--output_dir={out}", "--strip_frames=2"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "Episode 0 (red, scene seed" in printed and "Asynchronous inference (RTC, delay measured)" in printed
    report = json.loads((out / "eval_episodes.json").read_text())
    settings = report["settings"]
    assert settings["policy_type"] == "flow_vla" and settings["inference"] == "async"
    rollout, remote = settings["rollout"], settings["policy_server"]
    [episode] = report["episodes"]
    assert episode["ticks"] == 30 and episode["failure_mode"] in ("never_grasped", "timed_out")
    assert rollout["rtc"] is True and rollout["chunks"] >= 2 and remote["requests"] >= rollout["chunks"]
    # The delay estimate learns from the whole round trip, which contains the server's inference.
    assert rollout["latency_p50_s"] >= remote["server_inference_p50_s"] > 0


def test_eval_refuses_unworkable_policy_server_options():
    from lerobot_vla_plugin.workflow.evaluate import EvalEpisodesConfig, EvaluateConfig, UsageError, validate

    def check(**options):
        scripted = options.pop("scripted", False)
        validate(EvaluateConfig(eval=EvalEpisodesConfig(**options), scripted=scripted))

    check(policy_server="127.0.0.1:8765", inference="async")
    with pytest.raises(UsageError, match="--eval.policy_server needs --eval.inference async"):
        check(policy_server="127.0.0.1:8765")
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        check(policy_server="127.0.0.1", inference="async")
    with pytest.raises(UsageError, match="--eval.policy_server HOST:PORT or --scripted"):
        check(policy_server="127.0.0.1:8765", inference="async", scripted=True)
    assert parse_address("[::1]:8765") == ("::1", 8765)
