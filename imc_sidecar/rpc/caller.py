"""`imc-sidecar rpc`: call one admin method over HTTP JSON-RPC, BINRPC or a JSON-RPC datagram.

`-s` picks the transport the way kamcmd's `-s` does: `tcp:HOST:PORT` or `unix:/path`
speak BINRPC (like kamcmd), `http://…` speaks JSON-RPC over HTTP (the default,
`http://127.0.0.1:5092/RPC`), `udp:HOST:PORT` sends one JSON-RPC datagram (like kamcli).
"""

from __future__ import annotations

import json
import random
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

from .binrpc import parse_binrpc_address
from .binrpc_codec import (
    BinrpcError,
    PacketReader,
    PacketType,
    decode_values,
    double_fits,
    encode_request,
)
from .caller_format import result_values

__all__ = ["DEFAULT_URL", "CallResult", "RpcClientError", "call"]

DEFAULT_URL = "http://127.0.0.1:5092/RPC"
MAX_REPLY = 16 * 1024 * 1024  # the server's own cap; kamcmd stops at 128 KiB
_DATAGRAM = 65535

Param = int | float | str


class RpcClientError(Exception):
    """The call did not produce a reply or a fault (connection, protocol, bad argument)."""


@dataclass(slots=True)
class CallResult:
    """What came back: `values` to print kamcmd-style, `json` for --json, or a fault."""

    values: list[object] = field(default_factory=list)
    json: object = None
    fault: tuple[int, str] | None = None


def call(
    address: str,
    method: str,
    params: Sequence[Param],
    *,
    token: str | None = None,
    timeout: float = 5.0,
) -> CallResult:
    if address.startswith(("http://", "https://")):
        return _call_http(address, method, params, token, timeout)
    if address.lower().startswith("udp:"):
        return _call_datagram(address, method, params, timeout)
    return _call_binrpc(address, method, params, timeout)


# -- BINRPC ----------------------------------------------------------------------------


def _check_binrpc_params(params: Sequence[Param]) -> None:
    for number, param in enumerate(params, 1):
        if isinstance(param, int) and not -(2**31) <= param < 2**31:
            raise RpcClientError(
                f"argument {number}: {param} does not fit BINRPC's 32-bit int; "
                f"write s:{param} to send it as a string"
            )
        if isinstance(param, float) and not double_fits(param):
            raise RpcClientError(f"argument {number}: {param} does not fit a BINRPC double")


def _call_binrpc(address: str, method: str, params: Sequence[Param], timeout: float) -> CallResult:
    try:
        where = parse_binrpc_address(address)
    except ValueError as exc:
        raise RpcClientError(str(exc)) from None
    _check_binrpc_params(params)
    cookie = random.getrandbits(31)  # kamcmd uses rand()
    request = encode_request(cookie, method, params)
    try:
        if where.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(where.path)
        else:
            sock = socket.create_connection((where.host, where.port), timeout)
    except OSError as exc:
        raise RpcClientError(f"cannot connect to {where}: {exc}") from None
    reader = PacketReader(max_body=MAX_REPLY)
    with sock:
        try:
            sock.sendall(request)
            while (packet := reader.next_packet()) is None:
                data = sock.recv(65536)
                if not data:
                    raise RpcClientError(f"{where} closed the connection without a reply")
                reader.feed(data)
        except OSError as exc:
            raise RpcClientError(f"{where}: {exc}") from None
        except BinrpcError as exc:
            raise RpcClientError(f"{where}: bad reply: {exc}") from None
    if packet.cookie != cookie:
        raise RpcClientError(f"{where}: reply cookie {packet.cookie:#x} != {cookie:#x}")
    try:
        values = decode_values(packet.body)
    except BinrpcError as exc:
        raise RpcClientError(f"{where}: bad reply: {exc}") from None
    if packet.type is PacketType.FAULT:
        if len(values) < 2 or not isinstance(values[0], int):
            raise RpcClientError(f"{where}: malformed fault")
        return CallResult(fault=(values[0], str(values[1])))
    if packet.type is not PacketType.REPLY:
        raise RpcClientError(f"{where}: answered with a request")
    return CallResult(values=list(values), json=list(values))


# -- JSON-RPC --------------------------------------------------------------------------


def _request_document(method: str, params: Sequence[Param]) -> tuple[int, bytes]:
    ident = random.randint(2, 10000)  # kamcli's range
    document = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": ident}
    try:
        return ident, json.dumps(document, allow_nan=False).encode()
    except ValueError:
        raise RpcClientError("JSON cannot carry nan or infinity") from None


def _from_envelope(envelope: object, where: str) -> CallResult:
    if not isinstance(envelope, dict):
        raise RpcClientError(f"{where}: the reply is not a JSON-RPC object")
    error = envelope.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        return CallResult(
            fault=(code if isinstance(code, int) else 500, str(error.get("message", "")))
        )
    if "result" not in envelope:
        raise RpcClientError(f"{where}: the reply has neither result nor error")
    result = envelope["result"]
    return CallResult(values=result_values(result), json=result)


def _call_http(
    url: str, method: str, params: Sequence[Param], token: str | None, timeout: float
) -> CallResult:
    _ident, body = _request_document(method, params)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read(MAX_REPLY)
    except urllib.error.HTTPError as exc:  # a fault comes back as HTTP 500 with the envelope
        text = exc.read(MAX_REPLY)
        try:
            envelope = json.loads(text)
        except ValueError:
            raise RpcClientError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        return _from_envelope(envelope, url)
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise RpcClientError(f"cannot reach {url}: {reason}") from None
    try:
        envelope = json.loads(text)
    except ValueError:
        raise RpcClientError(f"{url}: the reply is not JSON") from None
    return _from_envelope(envelope, url)


def _call_datagram(
    address: str, method: str, params: Sequence[Param], timeout: float
) -> CallResult:
    host, sep, port_text = address[4:].rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit():
        raise RpcClientError(f"datagram address {address!r}: expected udp:HOST:PORT")
    ident, body = _request_document(method, params)
    try:
        infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_DGRAM)
        family, kind, proto, _name, target = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            sock.connect(target)
            sock.send(body)
            while True:  # skip stray datagrams: the reply echoes our id
                try:
                    envelope = json.loads(sock.recv(_DATAGRAM))
                except ValueError:
                    continue
                if isinstance(envelope, dict) and envelope.get("id") == ident:
                    return _from_envelope(envelope, address)
    except TimeoutError:
        raise RpcClientError(f"{address}: no reply within {timeout:g} s") from None
    except (OSError, ValueError) as exc:
        raise RpcClientError(f"{address}: {exc}") from None
