"""A UDP next hop that answers every MESSAGE with 200 and keeps what it received.

Used as the sidecar's outbound proxy when a test needs the notices answered (so
invitations do not fail) but does not run a full front Kamailio.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

# For a request's R-URI user part: the status line to answer with (None: stay silent)
# and how many seconds to wait first.
Policy = Callable[[str], tuple[str | None, float]]


class Answerer:
    def __init__(self, status: str = "200 OK", policy: Policy | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.status = status
        self.policy = policy
        self.received: list[bytes] = []
        self.arrived_at: list[float] = []  # time.monotonic() of each of `received`
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        return f"sip:{self.address[0]}:{self.address[1]}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data.startswith(b"MESSAGE "):
                continue
            self.arrived_at.append(time.monotonic())  # before `received`: zip stays paired
            self.received.append(data)
            head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
            keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in _ECHOED]
            status, delay = self.status, 0.0
            if self.policy is not None:
                user = head[0].split(" ")[1].split(":", 1)[1].split("@", 1)[0]
                status, delay = self.policy(user)
            if status is None:
                continue
            reply = f"SIP/2.0 {status}\r\n" + "\r\n".join(keep)
            data = (reply + "\r\nContent-Length: 0\r\n\r\n").encode()
            if delay:
                threading.Timer(delay, self._send, (data, source)).start()
            else:
                self._send(data, source)

    def _send(self, data: bytes, target: tuple[str, int]) -> None:
        with contextlib.suppress(OSError):  # closed meanwhile
            self.sock.sendto(data, target)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


_ECHOED = {"via", "from", "to", "call-id", "cseq"}
