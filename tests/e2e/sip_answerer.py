"""A UDP next hop that answers every MESSAGE with 200 and keeps what it received.

Used as the sidecar's outbound proxy when a test needs the notices answered (so
invitations do not fail) but does not run a full front Kamailio.
"""

from __future__ import annotations

import socket
import threading


class Answerer:
    def __init__(self, status: str = "200 OK") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address: tuple[str, int] = self.sock.getsockname()
        self.status = status
        self.received: list[bytes] = []
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
            self.received.append(data)
            head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
            keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in _ECHOED]
            reply = f"SIP/2.0 {self.status}\r\n" + "\r\n".join(keep)
            self.sock.sendto((reply + "\r\nContent-Length: 0\r\n\r\n").encode(), source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


_ECHOED = {"via", "from", "to", "call-id", "cseq"}
