"""BINRPC, the binary RPC of Kamailio's `ctl` module (what `kamcmd` speaks), sans-I/O.

Packet: a header `0xA1 | type<<4 | (len_bytes-1)<<2 | (cookie_bytes-1)`, the body length
and the cookie (both big-endian, 1-4 bytes), then the body: a flat run of records.
A record starts with one byte `S | size(3 bits) | type(4 bits)`; S=0 means `size` is the
value's length, S=1 means `size` bytes of length follow (a DOUBLE, int64(value × 1000),
has its byte count, up to 8, in the whole high nibble).  Structs and arrays are start and
end markers (`03`…`83`, `04`…`84`) around their members; struct members are AVP records
(a NUL-terminated name) each followed by one value.

The encoder writes what ctl writes (so kamcmd prints our replies exactly as it prints
Kamailio's); the decoder is strict, bounded, and raises only `BinrpcError`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .registry import RpcStruct

__all__ = [
    "MAX_BODY",
    "MAX_DEPTH",
    "MAX_PARAMS",
    "BinrpcError",
    "ErrorKind",
    "Packet",
    "PacketReader",
    "PacketType",
    "Struct",
    "Value",
    "decode_method",
    "decode_params",
    "decode_request",
    "decode_values",
    "double_fits",
    "double_text",
    "encode_fault",
    "encode_reply",
    "encode_request",
    "to_plain",
    "wire_double",
]

MAGIC_VERSION = 0xA1
MAX_BODY = 32 * 1024  # ctl's binrpc_max_body_size default (32, ×1024 at module init)
MAX_DEPTH = 32  # nesting of structs/arrays we accept; ctl replies nest 2-3 deep
MAX_PARAMS = 256  # kamcmd's MAX_BINRPC_ARGS
MAX_FAULT_TEXT = 255  # ctl formats faults into a 256-byte buffer, NUL included

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_NULL_STRING = "<null string>"  # what ctl sends for a NULL string

T_INT, T_STR, T_DOUBLE, T_STRUCT, T_ARRAY, T_AVP, T_BYTES = range(7)
_SCALARS = frozenset({T_INT, T_STR, T_DOUBLE, T_BYTES})


class PacketType(enum.IntEnum):
    REQUEST = 0
    REPLY = 1
    FAULT = 3


class ErrorKind(enum.Enum):
    """Kamailio's binrpc_error() texts, reused so our faults read like ctl's."""

    OVERFLOW = "buffer too small (overflow)"
    BAD_PACKET = "corrupted packet"
    MORE_DATA = "more data needed"
    END_OF_PACKET = "end of packet encountered"
    TYPE = "record doesn't match type"
    RECORD = "bad record"


class BinrpcError(Exception):
    """A malformed packet.  `cookie` is None when the header could not be trusted."""

    def __init__(
        self, kind: ErrorKind, detail: str, cookie: int | None = None, context: str = "bad request"
    ) -> None:
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind
        self.detail = detail
        self.cookie = cookie
        self.context = context

    @property
    def fault_text(self) -> str:
        """The fault message ctl sends for this error ("bad request: corrupted packet")."""
        return f"{self.context}: {self.kind.value}"


@dataclass(slots=True)
class Struct:
    """A decoded STRUCT or ARRAY: members in wire order, `None` names for plain values.

    ctl sends arrays as STRUCT markers around unnamed values, and a struct may in
    principle mix both, so the wire shape is kept; `to_plain` maps it to dict/list.
    """

    items: list[tuple[str | None, Value]] = field(default_factory=list)
    is_array: bool = False


Value = int | float | str | Struct


@dataclass(frozen=True, slots=True)
class Packet:
    type: PacketType
    cookie: int
    body: bytes


# -- encoding --------------------------------------------------------------------------


def double_text(value: float) -> str:
    """How kamcmd prints a BINRPC double: integral values without decimals, others
    with "%f" ("2", "2.500000", "-0.001000")."""
    if math.isfinite(value) and value.is_integer():
        return str(int(value))
    return f"{value:f}"


def double_fits(value: float) -> bool:
    """Whether BINRPC's int64 fixed point (value × 1000) can carry `value`."""
    fixed = value * 1000
    return math.isfinite(fixed) and abs(fixed) < 2**63


def wire_double(value: float) -> float:
    """The value a BINRPC peer receives for `value`: int64(value × 1000) / 1000, as C
    truncates it; values beyond that range are unchanged (we send them as text)."""
    return int(value * 1000) / 1000 if double_fits(value) else value


def _min_unsigned(value: int) -> bytes:
    """Big-endian, minimal length (0 → one byte here: header fields cannot be empty)."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _header(ptype: PacketType, body_len: int, cookie: int) -> bytes:
    if not 0 <= cookie <= 0xFFFFFFFF:
        raise ValueError(f"cookie out of range: {cookie}")
    if not 0 <= body_len <= 0xFFFFFFFF:
        raise ValueError(f"body too long: {body_len}")
    length = _min_unsigned(body_len)
    cookie_bytes = _min_unsigned(cookie)
    flags = (ptype << 4) | ((len(length) - 1) << 2) | (len(cookie_bytes) - 1)
    return bytes((MAGIC_VERSION, flags)) + length + cookie_bytes


def _int_record(value: int) -> bytes:
    # ctl's binrpc_write_int: 32-bit two's complement, leading zero bytes dropped
    # (0 → no value bytes, negatives always 4).
    raw = (value & 0xFFFFFFFF).to_bytes(4, "big").lstrip(b"\0")
    return bytes(((len(raw) << 4) | T_INT,)) + raw


def _double_record(fixed: int) -> bytes:
    # Kamailio 5.x: int64(value × 1000) written like an int on up to 8 bytes; the high
    # nibble is the byte count (0-8), with no S flag (a negative takes all 8: 0x82 …).
    raw = (fixed & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big").lstrip(b"\0")
    return bytes(((len(raw) << 4) | T_DOUBLE,)) + raw


def _str_record(data: bytes, rtype: int) -> bytes:
    if rtype in (T_STR, T_AVP):
        data += b"\0"
    size = len(data)
    if size < 8:
        return bytes(((size << 4) | rtype,)) + data
    length = _min_unsigned(size)
    return bytes((((8 | len(length)) << 4) | rtype,)) + length + data


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")  # bytes we decoded come back as sent
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _encode_value(value: object, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError("RPC value nested too deeply for BINRPC")
    if isinstance(value, bool):  # before int: bool is an int subclass; ctl's 'b' is an INT
        out += _int_record(int(value))
    elif isinstance(value, int):
        if _INT32_MIN <= value <= _INT32_MAX:
            out += _int_record(value)
        else:  # ctl's ints are 32-bit; the digits as text print the same in kamcmd
            out += _str_record(str(value).encode(), T_STR)
    elif isinstance(value, float):
        if double_fits(value):
            out += _double_record(int(value * 1000))  # C's cast: truncated toward zero
        else:  # beyond the fixed-point range: the text kamcmd would have printed
            out += _str_record(double_text(value).encode(), T_STR)
    elif isinstance(value, str):
        out += _str_record(_utf8(value), T_STR)
    elif value is None:
        out += _str_record(_NULL_STRING.encode(), T_STR)
    elif isinstance(value, Mapping):
        out.append(T_STRUCT)
        one_call = isinstance(value, RpcStruct) and value.one_call
        for name, member in value.items():
            out += _str_record(_utf8(str(name)), T_AVP)
            _encode_value(member, out, depth + 1)
            if one_call and isinstance(member, Mapping | list | tuple):
                break  # ctl's rpc_struct_add stops after a nested container
        out.append(0x80 | T_STRUCT)
    elif isinstance(value, list | tuple):
        out.append(T_STRUCT)  # ctl emits STRUCT markers for arrays too
        for item in value:
            _encode_value(item, out, depth + 1)
        out.append(0x80 | T_STRUCT)
    else:
        raise TypeError(f"cannot send {type(value).__name__} over BINRPC")


def encode_reply(cookie: int, values: Sequence[object]) -> bytes:
    """A reply packet: every value the method added, back to back (no array wrapper)."""
    body = bytearray()
    for value in values:
        _encode_value(value, body, 0)
    return _header(PacketType.REPLY, len(body), cookie) + body


def encode_fault(cookie: int, code: int, message: str) -> bytes:
    text = _utf8(message)[:MAX_FAULT_TEXT]
    text = text.decode("utf-8", "ignore").encode()  # do not end inside a UTF-8 sequence
    body = _int_record(code) + _str_record(text, T_STR)
    return _header(PacketType.FAULT, len(body), cookie) + body


def encode_request(cookie: int, method: str, params: Sequence[int | float | str]) -> bytes:
    if len(params) > MAX_PARAMS:
        raise ValueError(f"too many parameters ({len(params)}, at most {MAX_PARAMS})")
    body = bytearray(_str_record(_utf8(method), T_STR))
    for param in params:
        if isinstance(param, bool) or not isinstance(param, int | float | str):
            raise TypeError(f"BINRPC parameters are int, float or str, not {type(param)}")
        _encode_value(param, body, 0)
    return _header(PacketType.REQUEST, len(body), cookie) + body


# -- decoding --------------------------------------------------------------------------


class PacketReader:
    """Splits a byte stream into packets.  Feed bytes; take packets until None.

    Once it raised BinrpcError the stream cannot be resynchronised (packets are
    delimited only by their headers), so it keeps raising the same error.
    """

    def __init__(self, max_body: int = MAX_BODY) -> None:
        self._buffer = bytearray()
        self._max_body = max_body
        self._error: BinrpcError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        if self._error is None:  # a failed stream is never read again: keep nothing more
            self._buffer += data

    def next_packet(self) -> Packet | None:
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except BinrpcError as exc:
            self._error = exc
            raise

    def _next(self) -> Packet | None:
        buf = self._buffer
        if not buf:
            return None
        if buf[0] != MAGIC_VERSION:  # not BINRPC at all: nothing in it can be trusted
            raise BinrpcError(ErrorKind.BAD_PACKET, f"first byte {buf[0]:#04x}")
        if len(buf) < 2:
            return None
        len_len = ((buf[1] >> 2) & 3) + 1
        cookie_len = (buf[1] & 3) + 1
        header_len = 2 + len_len + cookie_len
        if len(buf) < header_len:
            return None
        body_len = int.from_bytes(buf[2 : 2 + len_len], "big")
        cookie = int.from_bytes(buf[2 + len_len : header_len], "big")
        type_code = buf[1] >> 4
        if type_code not in (PacketType.REQUEST, PacketType.REPLY, PacketType.FAULT):
            raise BinrpcError(ErrorKind.BAD_PACKET, f"packet type {type_code}", cookie)
        if body_len > self._max_body:
            raise BinrpcError(
                ErrorKind.OVERFLOW, f"body of {body_len} bytes > {self._max_body}", cookie
            )
        end = header_len + body_len
        if len(buf) < end:
            return None
        body = bytes(buf[header_len:end])
        del buf[:end]
        return Packet(PacketType(type_code), cookie, body)


class _Cursor:
    """Reads one record header or value at a time from a body."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.body)

    def take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.body):
            raise BinrpcError(ErrorKind.MORE_DATA, f"record runs past the body at {self.pos}")
        data = self.body[self.pos : end]
        self.pos = end
        return data

    def record(self) -> tuple[int, bool, int]:
        """(type, S flag, value length) of the next record; the cursor is on the value."""
        if self.at_end():
            raise BinrpcError(ErrorKind.END_OF_PACKET, f"no record at {self.pos}")
        first = self.take(1)[0]
        rtype, flag, size = first & 0x0F, bool(first & 0x80), (first >> 4) & 7
        if rtype == T_DOUBLE:  # the whole nibble is the length (up to 8 bytes)
            if first >> 4 > 8:
                raise BinrpcError(ErrorKind.RECORD, f"{first >> 4}-byte double at {self.pos - 1}")
            return rtype, False, first >> 4
        if not flag:
            return rtype, False, size
        if size > 4:
            raise BinrpcError(ErrorKind.RECORD, f"{size}-byte length field at {self.pos - 1}")
        return rtype, True, int.from_bytes(self.take(size), "big") if size else 0


def _scalar(cursor: _Cursor, rtype: int, length: int) -> int | float | str:
    raw = cursor.take(length)
    if rtype == T_INT:
        # ctl reads into a 32-bit int: the low 4 bytes count, shorter values are unsigned
        number = int.from_bytes(raw[-4:], "big")
        return number - 2**32 if number >= 2**31 else number
    if rtype == T_DOUBLE:  # int64 fixed point; only an 8-byte value can be negative
        number = int.from_bytes(raw, "big")
        if length == 8 and number >= 2**63:
            number -= 2**64
        return number / 1000
    if rtype == T_STR:
        if not raw or raw[-1] != 0:
            raise BinrpcError(ErrorKind.RECORD, f"string without NUL at {cursor.pos - length}")
        raw = raw[:-1]
    return raw.decode("utf-8", "surrogateescape")


def _name(cursor: _Cursor, length: int) -> str:
    raw = cursor.take(length)
    if not raw or raw[-1] != 0:
        raise BinrpcError(ErrorKind.RECORD, f"member name without NUL at {cursor.pos - length}")
    return raw[:-1].decode("utf-8", "surrogateescape")


def decode_values(body: bytes, *, max_depth: int = MAX_DEPTH) -> list[Value]:
    """Every top-level value of a reply or fault body (kamcmd's lenient reading).

    Inside a struct, members may be named (AVP + value) or plain (how ctl sends arrays).
    """
    cursor = _Cursor(body)
    top: list[Value] = []
    stack: list[Struct] = []
    pending_name: str | None = None
    while not cursor.at_end():
        at = cursor.pos
        rtype, flag, length = cursor.record()
        if rtype == T_AVP:
            if not stack or stack[-1].is_array or pending_name is not None:
                raise BinrpcError(ErrorKind.TYPE, f"member name outside a struct at {at}")
            pending_name = _name(cursor, length)
            continue
        if rtype in (T_STRUCT, T_ARRAY):
            if length != 0:
                raise BinrpcError(ErrorKind.RECORD, f"container marker with a length at {at}")
            if flag:  # end marker
                if pending_name is not None or not stack:
                    raise BinrpcError(ErrorKind.RECORD, f"unexpected end marker at {at}")
                if stack[-1].is_array != (rtype == T_ARRAY):
                    raise BinrpcError(ErrorKind.RECORD, f"mismatched end marker at {at}")
                stack.pop()
                continue
            if len(stack) >= max_depth:
                raise BinrpcError(ErrorKind.RECORD, f"nesting deeper than {max_depth} at {at}")
            value: Value = Struct(is_array=rtype == T_ARRAY)
        elif rtype in _SCALARS:
            value = _scalar(cursor, rtype, length)
        else:
            raise BinrpcError(ErrorKind.TYPE, f"record type {rtype} at {at}")
        if stack:
            stack[-1].items.append((pending_name, value))
            pending_name = None
        else:
            top.append(value)
        if isinstance(value, Struct):
            stack.append(value)
    if stack or pending_name is not None:
        raise BinrpcError(ErrorKind.MORE_DATA, "body ends inside a struct")
    return top


def decode_method(body: bytes) -> tuple[str, int]:
    """The method name of a request body, and where its parameters start.

    Errors here read "bad request method: …", as in ctl.
    """
    cursor = _Cursor(body)
    try:
        rtype, _flag, length = cursor.record()
        if rtype != T_STR:
            raise BinrpcError(ErrorKind.TYPE, f"method record of type {rtype}")
        method = _scalar(cursor, rtype, length)
    except BinrpcError as exc:
        exc.context = "bad request method"
        raise
    assert isinstance(method, str)
    return method, cursor.pos


def decode_params(body: bytes, start: int) -> list[int | float | str]:
    """The scalar parameters from `start` on (ctl's rpc_scan reads no structs either)."""
    cursor = _Cursor(body)
    cursor.pos = start
    params: list[int | float | str] = []
    while not cursor.at_end():
        at = cursor.pos
        rtype, _flag, length = cursor.record()
        if rtype not in _SCALARS:
            raise BinrpcError(ErrorKind.TYPE, f"parameter record of type {rtype} at {at}")
        if len(params) >= MAX_PARAMS:
            raise BinrpcError(ErrorKind.OVERFLOW, f"more than {MAX_PARAMS} parameters")
        params.append(_scalar(cursor, rtype, length))
    return params


def decode_request(body: bytes) -> tuple[str, list[int | float | str]]:
    """The method name and the scalar parameters of a request body."""
    method, start = decode_method(body)
    return method, decode_params(body, start)


def to_plain(value: Value) -> object:
    """JSON-shaped: named structs → dict, unnamed → list; mixed → list, names kept as
    one-member dicts (what jsonrpcs does when a struct member is added to an array)."""
    if not isinstance(value, Struct):
        return value
    names = [name for name, _ in value.items]
    if value.items and all(name is not None for name in names) and not value.is_array:
        return {name: to_plain(member) for name, member in value.items if name is not None}
    if not value.items and not value.is_array:
        return {}
    return [
        to_plain(member) if name is None else {name: to_plain(member)}
        for name, member in value.items
    ]
