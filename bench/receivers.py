"""The chat members of the benchmark in Python: the fallback for ``bench/receiver.c``.

The benchmark uses the C receiver when a C compiler is present (it costs a fraction of
the CPU per delivery); this module does the same job with the same control protocol and
the same dump format, for machines without ``cc``.

Every member owns a UDP socket on its own loopback address, port 5060
(``sip:user@127.1.R.M`` is how imc addresses it).  One process serves many sockets with
one ``epoll`` loop, reads every waiting datagram of a ready socket per wake-up, answers
each request with a 200 built from its Via/From/To/Call-ID/CSeq lines, and keeps
``(member, body, arrival time, hash of the datagram)`` per MESSAGE; bodies are parsed
only when dumped, off the hot path.

Run as ``python -m bench.receivers MEMBERS_FILE`` (lines ``id ip user``); it is driven
through stdin/stdout, one command per line:

``reset``                  forget what was received; ``ok``
``count``                  ``count N LAST OTHER`` (records, wall time of the last one)
``dump PATH``              write the records to PATH (:data:`RECORD` structs); ``ok N``
``register IP PORT DOMAIN EXPIRES``  every member REGISTERs ``sip:user@DOMAIN`` with its
                           own socket as Contact at ``IP:PORT``; ``registered N`` (2xx seen)
``quit``                   exit
"""

from __future__ import annotations

import os
import re
import select
import socket
import struct
import sys
import time
import uuid
from collections.abc import Callable

MEMBER_PORT = 5060
SOCKET_BUFFER = 4 * 1024 * 1024

# The lines a 200 repeats from the request (RFC 3261 §8.2.6.2), full or compact names.
_KEEP = re.compile(rb"^(?:via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[^\r\n]*\r\n", re.I | re.M)
_OK = b"SIP/2.0 200 OK\r\n"
_TAIL = b"Content-Length: 0\r\n\r\n"

Record = tuple[int, bytes, float, int]

# One dumped record, as bench/receiver.c writes it: member, padding, sequence number,
# send time (µs), arrival time (µs), 64-bit hash of the datagram.
RECORD = struct.Struct("<IIQqqQ")
_BODY = re.compile(rb"bench n(\d+) r\d* t[^\t]*\t[^\t]*\t(\d+)\.(\d{1,6})")


def pack(records: list[Record]) -> bytes:
    out = bytearray()
    for member, body, arrived, digest in records:
        m = _BODY.search(body)
        seq = sent = 0
        if m is not None:
            seq = int(m.group(1))
            sent = int(m.group(2)) * 1_000_000 + int(m.group(3).ljust(6, b"0"))
        out += RECORD.pack(member, 0, seq, sent, round(arrived * 1e6), digest & (2**64 - 1))
    return bytes(out)


class Receivers:
    def __init__(self, members: list[tuple[int, str, str]]) -> None:
        self.poller = select.epoll()
        self.socks: dict[int, socket.socket] = {}
        self.member_of: dict[int, int] = {}
        self.users: dict[int, tuple[str, str]] = {}
        for member, ip, user in members:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.bind((ip, MEMBER_PORT))
            sock.setblocking(False)
            fd = sock.fileno()
            self.socks[fd] = sock
            self.member_of[fd] = member
            self.users[fd] = (ip, user)
            self.poller.register(fd, select.EPOLLIN)
        self.records: list[Record] = []
        self.last = 0.0
        self.registered = 0
        self.other = 0  # responses and requests that are not MESSAGE

    # ------------------------------------------------------------------ the hot loop

    def drain(self, fd: int) -> None:
        sock = self.socks[fd]
        member = self.member_of[fd]
        recvfrom = sock.recvfrom
        sendto = sock.sendto
        append = self.records.append
        keep = _KEEP.findall
        now = time.time
        while True:
            try:
                data, addr = recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                continue
            if data.startswith(b"MESSAGE "):
                end = data.find(b"\r\n\r\n")
                sendto(_OK + b"".join(keep(data, 0, end + 2)) + _TAIL, addr)
                append((member, data[end + 4 :], now(), hash(data)))
            elif data.startswith(b"SIP/2.0 2"):
                self.registered += 1
            elif data.startswith(b"SIP/2.0"):
                self.other += 1
            else:
                end = data.find(b"\r\n\r\n")
                sendto(_OK + b"".join(keep(data, 0, end + 2)) + _TAIL, addr)
                self.other += 1

    def serve(self, control: Callable[[str], bool]) -> None:
        ctl = sys.stdin.fileno()
        os.set_blocking(ctl, False)
        self.poller.register(ctl, select.EPOLLIN)
        pending = b""
        while True:
            for fd, _ in self.poller.poll(1.0):
                if fd != ctl:
                    self.drain(fd)
                    continue
                chunk = os.read(ctl, 65536)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    if not control(line.decode().strip()):
                        return
            if self.records:
                self.last = self.records[-1][2]

    # ------------------------------------------------------------------ control

    def register(self, ip: str, port: int, domain: str, expires: int) -> int:
        self.registered = 0
        wanted = len(self.socks)
        for fd, sock in self.socks.items():
            own, user = self.users[fd]
            branch = "z9hG4bK" + uuid.uuid4().hex[:20]
            msg = (
                f"REGISTER sip:{domain} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {own}:{MEMBER_PORT};branch={branch};rport\r\n"
                f"From: <sip:{user}@{domain}>;tag={uuid.uuid4().hex[:8]}\r\n"
                f"To: <sip:{user}@{domain}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}@{own}\r\n"
                "CSeq: 1 REGISTER\r\n"
                f"Contact: <sip:{user}@{own}:{MEMBER_PORT}>\r\n"
                f"Expires: {expires}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(msg.encode(), (ip, port))
        deadline = time.monotonic() + 10
        while self.registered < wanted and time.monotonic() < deadline:
            for fd, _ in self.poller.poll(0.1):
                if fd in self.socks:
                    self.drain(fd)
        return self.registered


def main(argv: list[str]) -> int:
    with open(argv[0]) as fh:
        members = [
            (int(m), ip, user) for m, ip, user in (line.split() for line in fh if line.strip())
        ]
    receivers = Receivers(members)
    out = sys.stdout

    def reply(text: str) -> None:
        out.write(text + "\n")
        out.flush()

    def control(line: str) -> bool:
        words = line.split()
        if not words:
            return True
        cmd = words[0]
        if cmd == "reset":
            receivers.records = []
            receivers.other = 0
            receivers.last = 0.0
            reply("ok")
        elif cmd == "count":
            reply(f"count {len(receivers.records)} {receivers.last:.6f} {receivers.other}")
        elif cmd == "dump":
            with open(words[1], "wb") as fh:
                fh.write(pack(receivers.records))
            reply(f"ok {len(receivers.records)}")
        elif cmd == "register":
            n = receivers.register(words[1], int(words[2]), words[3], int(words[4]))
            reply(f"registered {n}")
        elif cmd == "quit":
            reply("bye")
            return False
        else:
            reply(f"error unknown command {cmd}")
        return True

    reply(f"ready {len(members)} {os.getpid()}")
    receivers.serve(control)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
