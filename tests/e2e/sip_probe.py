"""A tiny raw SIP peer for protocol-level end-to-end checks (malformed input, framing).

User behaviour is driven by real sipp processes; this probe exists for what sipp cannot
send: broken messages, split TCP segments, keep-alives.
"""

from __future__ import annotations

import socket
import uuid


def message(
    ruri: str,
    body: str,
    *,
    from_uri: str = "sip:alice@127.0.0.1",
    call_id: str | None = None,
    method: str = "MESSAGE",
    via_host: str = "127.0.0.1:1",
    transport: str = "UDP",
    branch: str | None = None,
) -> bytes:
    data = body.encode()
    call_id = call_id or uuid.uuid4().hex
    branch = branch or "z9hG4bK" + uuid.uuid4().hex
    head = (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via_host};branch={branch};rport\r\n"
        f"From: <{from_uri}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <{ruri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


class UdpProbe:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(3)
        self.address: tuple[str, int] = self.sock.getsockname()

    def exchange(self, data: bytes, target: tuple[str, int], timeout: float = 3) -> bytes:
        self.sock.settimeout(timeout)
        self.sock.sendto(data, target)
        reply, _ = self.sock.recvfrom(65535)
        return reply

    def receive(self, timeout: float = 3) -> bytes:
        self.sock.settimeout(timeout)
        data, _ = self.sock.recvfrom(65535)
        return data

    def close(self) -> None:
        self.sock.close()


def status_line(reply: bytes) -> str:
    return reply.split(b"\r\n", 1)[0].decode()
