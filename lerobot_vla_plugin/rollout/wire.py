"""The policy server's wire format: length-prefixed frames of a JSON header and raw little-endian array bytes.

Nothing on this wire is ever executed or unpickled: a frame is data only, and it is checked before anything is
built from it. One frame:

    magic  b"LVWF"         4 bytes
    header_len             uint32, little-endian
    payload_len            uint64, little-endian
    header                 header_len bytes of UTF-8 JSON (an object, see below)
    payload                payload_len bytes: the arrays' bytes, back to back, in the header's order

The header holds exactly `type` (one of MESSAGES), `version` (PROTOCOL_VERSION), `id` (a request id the answer
repeats), `meta` (the message's fields, checked against MESSAGES[type]) and `arrays` (a list of {name, dtype,
shape}); anything else is refused. Arrays are C-ordered, little-endian, of the dtypes in DTYPES only, and their
byte counts must add up to payload_len exactly. A frame over `max_frame_bytes` is refused from its prefix, before
its bytes are read.

Errors are `WireError`s with a `code` and a message that says what was wrong; `in_sync` tells whether the stream
can go on (the whole frame was read) or has to be closed (bad magic, a frame too large: its end is unknown).
"""

from __future__ import annotations

import json
import math
import socket
import struct
from dataclasses import dataclass, field

import numpy as np

PROTOCOL_VERSION = 1
MAGIC = b"LVWF"
_PREFIX = struct.Struct("<4sIQ")
PREFIX_BYTES = _PREFIX.size
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_ARRAYS = 64
MAX_NDIM = 8
MAX_NAME_CHARS = 128
MAX_TEXT_CHARS = 4096

# Plain numeric dtypes only: no object, string, structured or void dtype can be named.
DTYPES = {name: np.dtype(name).newbyteorder("<") for name in (
    "bool", "uint8", "int8", "int16", "uint16", "int32", "int64", "float16", "float32", "float64")}
_HEADER_KEYS = {"type", "version", "id", "meta", "arrays"}
_ARRAY_KEYS = {"name", "dtype", "shape"}


class WireError(ValueError):
    """A frame or message that cannot be accepted. `code`: malformed, too_large, version, unexpected, ...;
    `in_sync`: False when the rest of the stream cannot be trusted (the connection must close)."""

    def __init__(self, message: str, code: str = "malformed", in_sync: bool = True):
        super().__init__(message)
        self.code = code
        self.in_sync = in_sync


class ConnectionClosed(ConnectionError):
    """The peer closed the connection (between frames, or in the middle of one)."""


# -- message fields ------------------------------------------------------------------------------------------------

def _text(value) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT_CHARS


def _optional(check):
    return lambda value: value is None or check(value)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _seconds(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _flag(value) -> bool:
    return isinstance(value, bool)


def _features(value) -> bool:
    """{name: {"type": str, "shape": [int, ...]}}: a policy's input or output features."""
    if not isinstance(value, dict) or len(value) > MAX_ARRAYS:
        return False
    return all(_text(name) and isinstance(ft, dict) and set(ft) == {"type", "shape"} and _text(ft["type"])
               and isinstance(ft["shape"], list) and len(ft["shape"]) <= MAX_NDIM
               and all(_count(dim) for dim in ft["shape"]) for name, ft in value.items())


@dataclass(frozen=True)
class MessageSpec:
    """The fields a message may carry (`required` and `optional` name -> check) and which arrays."""

    required: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)
    array_names: frozenset = frozenset()
    array_prefix: str | None = None

    def array_allowed(self, name: str) -> bool:
        return name in self.array_names or (self.array_prefix is not None and name.startswith(self.array_prefix))


MESSAGES: dict[str, MessageSpec] = {
    # client -> server, first: who it is and the shared token (when the server has one).
    "hello": MessageSpec(optional={"token": _optional(_text), "client": _optional(_text)}),
    # server -> client: the policy being served.
    "welcome": MessageSpec(required={"policy_type": _text, "supports_rtc": _flag, "chunk_size": _optional(_count),
                                     "input_features": _features, "output_features": _features},
                           optional={"n_action_steps": _optional(_count)}),
    "reset": MessageSpec(),
    "reset_done": MessageSpec(),
    # client -> server: one observation (its dataset frame), the task, RTC's delay and previous chunk's rest.
    "infer": MessageSpec(required={"task": _text},
                         optional={"robot_type": _optional(_text), "inference_delay": _optional(_count),
                                   "sent_unix_s": _optional(_seconds)},
                         array_names=frozenset({"prev_chunk_left_over"}), array_prefix="observation."),
    # server -> client: the chunk (robot units and normalised) and how long the server spent on it.
    "chunk": MessageSpec(required={"inference_s": _seconds, "handled_s": _seconds},
                         array_names=frozenset({"actions", "normalized"})),
    "error": MessageSpec(required={"code": _text, "message": _text}),
}


@dataclass
class Message:
    type: str
    meta: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    id: int = 0


# -- encoding ------------------------------------------------------------------------------------------------------

def encode(message: Message, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes:
    """The frame for `message`, checked as the receiver will check it (a sender cannot send what is refused)."""
    specs, chunks = [], []
    for name, value in message.arrays.items():
        array = np.asarray(value)
        dtype_name = array.dtype.name
        if dtype_name not in DTYPES:
            raise WireError(f"array {name!r} has dtype {array.dtype}, which the wire does not carry "
                            f"(allowed: {', '.join(DTYPES)})", "bad_dtype")
        chunks.append(np.ascontiguousarray(array, dtype=DTYPES[dtype_name]).tobytes())
        specs.append({"name": name, "dtype": dtype_name, "shape": [int(dim) for dim in array.shape]})
    header = {"type": message.type, "version": PROTOCOL_VERSION, "id": int(message.id), "meta": message.meta,
              "arrays": specs}
    header_bytes = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    payload = b"".join(chunks)
    _check_sizes(len(header_bytes), len(payload), max_frame_bytes)
    decode_header(header_bytes, len(payload))  # the same checks the receiver makes
    return _PREFIX.pack(MAGIC, len(header_bytes), len(payload)) + header_bytes + payload


def _check_sizes(header_len: int, payload_len: int, max_frame_bytes: int) -> None:
    if header_len > MAX_HEADER_BYTES:
        raise WireError(f"frame header of {header_len} bytes is over the limit of {MAX_HEADER_BYTES}", "too_large",
                        in_sync=False)
    total = PREFIX_BYTES + header_len + payload_len
    if total > max_frame_bytes:
        raise WireError(f"frame of {total} bytes is over the limit of {max_frame_bytes} bytes", "too_large",
                        in_sync=False)


# -- decoding ------------------------------------------------------------------------------------------------------

def _refuse_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key in {keys}")
    return dict(pairs)


def decode_header(header_bytes: bytes, payload_len: int) -> dict:
    """The checked header: every field known and well typed, the arrays' byte counts adding up to payload_len."""
    try:
        header = json.loads(header_bytes.decode("utf-8"), parse_constant=_refuse_constant,
                            object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise WireError(f"frame header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("frame header is not a JSON object")
    if set(header) != _HEADER_KEYS:
        unknown, missing = sorted(set(header) - _HEADER_KEYS), sorted(_HEADER_KEYS - set(header))
        raise WireError(f"frame header fields are wrong (unknown: {unknown}, missing: {missing})")
    version = header["version"]
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise WireError(f"protocol version {version!r} is not supported (this side speaks {PROTOCOL_VERSION})",
                        "version")
    if not _count(header["id"]):
        raise WireError(f"message id {header['id']!r} is not a non-negative integer")
    kind = header["type"]
    spec = MESSAGES.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise WireError(f"unknown message type {kind!r} (known: {', '.join(MESSAGES)})", "unknown_type")
    _check_meta(kind, spec, header["meta"])
    _check_arrays(kind, spec, header["arrays"], payload_len)
    return header


def _check_meta(kind: str, spec: MessageSpec, meta) -> None:
    if not isinstance(meta, dict):
        raise WireError(f"{kind}: meta is not an object")
    allowed = {**spec.required, **spec.optional}
    unknown = sorted(set(meta) - set(allowed))
    if unknown:
        raise WireError(f"{kind}: unknown field(s) {unknown} (allowed: {sorted(allowed) or 'none'})")
    missing = sorted(set(spec.required) - set(meta))
    if missing:
        raise WireError(f"{kind}: missing field(s) {missing}")
    for name, value in meta.items():
        if not allowed[name](value):
            raise WireError(f"{kind}: field {name!r} has an invalid value {_short(value)}")


def _check_arrays(kind: str, spec: MessageSpec, arrays, payload_len: int) -> None:
    if not isinstance(arrays, list) or len(arrays) > MAX_ARRAYS:
        raise WireError(f"{kind}: arrays must be a list of at most {MAX_ARRAYS}")
    names, total = set(), 0
    for entry in arrays:
        if not isinstance(entry, dict) or set(entry) != _ARRAY_KEYS:
            raise WireError(f"{kind}: an array entry must have exactly the fields {sorted(_ARRAY_KEYS)}, "
                            f"got {_short(entry)}")
        name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS or name in names:
            raise WireError(f"{kind}: array name {_short(name)} is invalid or repeated")
        if not spec.array_allowed(name):
            raise WireError(f"{kind}: array {name!r} is not one this message carries")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise WireError(f"{kind}: array {name!r} has dtype {_short(dtype)}, not one of {', '.join(DTYPES)}",
                            "bad_dtype")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_count(dim) for dim in shape):
            raise WireError(f"{kind}: array {name!r} has an invalid shape {_short(shape)}")
        names.add(name)
        total += math.prod(shape) * DTYPES[dtype].itemsize
    if total != payload_len:
        raise WireError(f"{kind}: the arrays' shapes and dtypes make {total} bytes but the payload has "
                        f"{payload_len}", "size_mismatch")


def decode(header: dict, payload: bytes | memoryview) -> Message:
    """The message of a checked header (decode_header) and its payload; arrays are copied, writable, native."""
    arrays, offset = {}, 0
    for entry in header["arrays"]:
        dtype = DTYPES[entry["dtype"]]
        count = math.prod(entry["shape"])
        view = np.frombuffer(payload, dtype=dtype, count=count, offset=offset)
        arrays[entry["name"]] = view.astype(dtype.newbyteorder("="), copy=True).reshape(entry["shape"])
        offset += count * dtype.itemsize
    return Message(header["type"], dict(header["meta"]), arrays, header["id"])


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- sockets -------------------------------------------------------------------------------------------------------

def _recv_exact(sock: socket.socket, count: int, started: bool) -> bytes:
    buffer = bytearray(count)
    view, received = memoryview(buffer), 0
    while received < count:
        n = sock.recv_into(view[received:], count - received)
        if n == 0:
            raise ConnectionClosed("the peer closed the connection" + (" in the middle of a frame" if started or
                                                                         received else ""))
        received += n
    return bytes(buffer)


def read_message(sock: socket.socket, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Message:
    """The next message on `sock`. Raises ConnectionClosed at the end of the stream, WireError for a bad frame
    (after reading all of it when its size was acceptable, so the stream stays in sync), socket.timeout."""
    prefix = _recv_exact(sock, PREFIX_BYTES, started=False)
    magic, header_len, payload_len = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        hint = " (it looks like a pickle, which is never accepted)" if prefix[:1] == b"\x80" else ""
        raise WireError(f"not a frame of this protocol: it starts with {prefix[:4]!r}, not {MAGIC!r}{hint}",
                        in_sync=False)
    _check_sizes(header_len, payload_len, max_frame_bytes)
    header_bytes = _recv_exact(sock, header_len, started=True)
    payload = _recv_exact(sock, payload_len, started=True)
    return decode(decode_header(header_bytes, payload_len), payload)


def send_message(sock: socket.socket, message: Message, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
    sock.sendall(encode(message, max_frame_bytes))


def error_message(code: str, text: str, request_id: int = 0) -> Message:
    return Message("error", {"code": code, "message": text[:MAX_TEXT_CHARS]}, id=request_id)
