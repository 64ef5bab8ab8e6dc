"""What the sidecar and its delivery workers say to each other: plain data, no I/O.

Both ends are the same interpreter running the same code (the worker is started by the
sidecar with `sys.executable`), so `marshal`, the fastest serializer for plain tuples,
is safe here.  Each message is one SOCK_SEQPACKET record, so no framing is needed.

Sidecar → worker, one record per fan-out: a *job* `(token, from_uri, body, headers,
recipients)`.  `token` 0 means nobody needs to hear how the copies ended beyond the
count; any other token is echoed back for each copy.

Worker → sidecar, one record per batch of answers: a *report* `(completed, outcomes)`,
where `completed` counts the copies that ended (answered or failed) since the last
report and `outcomes` lists `(token, status, reason)` for each of them that failed
(status >= 300) or carried a token.  The first record a worker sends is its *hello*:
the UDP address it sends from.
"""

from __future__ import annotations

import marshal
from dataclasses import dataclass

__all__ = [
    "Hello",
    "Job",
    "Report",
    "WireError",
    "decode_hello",
    "decode_job",
    "decode_report",
    "encode_hello",
    "encode_job",
    "encode_report",
]

# Big enough for a fan-out of a 64 KiB body to thousands of members in one record.
MAX_RECORD = 4 * 1024 * 1024
_HELLO = "imc-delivery/1"


class WireError(ValueError):
    """A record that is not what the other end should have sent."""


@dataclass(frozen=True, slots=True)
class Job:
    token: int
    from_uri: str
    body: bytes
    headers: bytes
    recipients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Report:
    completed: int
    outcomes: list[tuple[int, int, str]]  # (token, status, reason)


@dataclass(frozen=True, slots=True)
class Hello:
    host: str
    port: int


def encode_job(
    token: int, from_uri: str, body: bytes, headers: bytes, recipients: tuple[str, ...]
) -> bytes:
    return marshal.dumps((token, from_uri, body, headers, recipients))


def decode_job(record: bytes | memoryview) -> Job:
    try:
        token, from_uri, body, headers, recipients = marshal.loads(record)
    except (EOFError, ValueError, TypeError) as exc:
        raise WireError(f"bad job record: {exc}") from None
    if not (isinstance(token, int) and isinstance(from_uri, str) and isinstance(body, bytes)
            and isinstance(headers, bytes) and isinstance(recipients, tuple)):
        raise WireError("bad job record: wrong field types")
    return Job(token, from_uri, body, headers, recipients)


def encode_report(completed: int, outcomes: list[tuple[int, int, str]]) -> bytes:
    return marshal.dumps((completed, outcomes))


def decode_report(record: bytes) -> Report:
    try:
        completed, outcomes = marshal.loads(record)
    except (EOFError, ValueError, TypeError) as exc:
        raise WireError(f"bad report record: {exc}") from None
    if not isinstance(completed, int) or not isinstance(outcomes, list):
        raise WireError("bad report record: wrong field types")
    return Report(completed, outcomes)


def encode_hello(host: str, port: int) -> bytes:
    return marshal.dumps((_HELLO, host, port))


def decode_hello(record: bytes) -> Hello:
    try:
        magic, host, port = marshal.loads(record)
    except (EOFError, ValueError, TypeError) as exc:
        raise WireError(f"bad hello record: {exc}") from None
    if magic != _HELLO or not isinstance(host, str) or not isinstance(port, int):
        raise WireError(f"bad hello record: {magic!r}")
    return Hello(host, port)
