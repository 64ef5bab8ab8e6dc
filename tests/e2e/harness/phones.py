"""SIP phones on UDP, TCP and WebSocket for the end-to-end tests of kamailio-snippets/.

sipp (:mod:`.sipua`) plays users over UDP; a user on TCP or on SIP over WebSocket
(RFC 7118) needs a phone that keeps its own connection open, registers through it and
takes its MESSAGEs over it.  :class:`Phone` is that phone, on asyncio: it registers,
sends a MESSAGE and waits for the final answer, and answers every MESSAGE it receives
with 200, keeping each one (a retransmission is answered again but kept once, as a
real phone would).

Per transport, as a phone of that kind writes them:

* ``udp``: Via and Contact carry the phone's own address;
* ``tcp``: the same with ``;transport=tcp``, one connection to the proxy for everything;
* ``ws``: a WebSocket to ``ws://proxy:ws_port/`` with subprotocol ``sip``, Via
  ``SIP/2.0/WS <random>.invalid`` and Contact ``sip:user@<random>.invalid;transport=ws``,
  an address nobody can dial: the proxy must use the connection (RFC 7118 §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import aiohttp

from .sipua import SipMessage, parse_sip_message

TRANSPORTS = ("udp", "tcp", "ws")


class PhoneError(RuntimeError):
    """A phone could not connect, or a request got no final answer in time."""


@dataclass(frozen=True)
class Received:
    """A MESSAGE the phone took, with when it arrived (time.monotonic())."""

    message: SipMessage
    arrived: float

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def sender(self) -> str:
        """The From URI: the room for room traffic."""
        return self.message.from_uri

    def via_hosts(self) -> list[str]:
        """host:port of every Via, top (the last proxy) first."""
        out = []
        for value in self.message.header_values("via"):
            for via in value.split(","):
                sent_by = via.strip().split(" ", 1)[1] if " " in via.strip() else ""
                out.append(sent_by.split(";", 1)[0].strip())
        return out


class Phone:
    """One user's phone at ``proxy`` on ``transport`` (``udp``, ``tcp`` or ``ws``)."""

    def __init__(
        self,
        user: str,
        domain: str,
        proxy: tuple[str, int],
        transport: str,
        *,
        ws_port: int | None = None,
        ip: str = "127.0.0.1",
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(transport)
        if transport == "ws" and ws_port is None:
            raise ValueError("a WebSocket phone needs ws_port")
        self.user = user
        self.domain = domain
        self.aor = f"sip:{user}@{domain}"
        self.proxy = proxy
        self.transport = transport
        self.ws_port = ws_port
        self.ip = ip
        self.received: list[Received] = []
        self._answered: dict[tuple[str, str, str], bytes] = {}
        self._pending: dict[str, asyncio.Future[SipMessage]] = {}
        self._arrival = asyncio.Event()
        self._cseq = itertools.count(1)
        self._tag = uuid.uuid4().hex[:10]
        self._invalid = uuid.uuid4().hex[:12] + ".invalid"
        self._local: tuple[str, int] = (ip, 0)
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Future[None]] = set()
        self.closed = False

    def __repr__(self) -> str:
        return f"Phone({self.user}/{self.transport})"

    # --- connection -------------------------------------------------------------------

    async def open(self) -> Phone:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self), local_addr=(self.ip, 0)
            )
            self._udp = transport
            self._local = transport.get_extra_info("sockname")[:2]
        elif self.transport == "tcp":
            reader, writer = await asyncio.open_connection(
                *self.proxy, local_addr=(self.ip, 0)
            )
            self._writer = writer
            self._local = writer.get_extra_info("sockname")[:2]
            self._reader = asyncio.create_task(self._read_stream(reader))
        else:
            self._session = aiohttp.ClientSession()
            url = f"ws://{self.proxy[0]}:{self.ws_port}/"
            try:
                self._ws = await self._session.ws_connect(url, protocols=("sip",))
            except Exception:
                await self._session.close()
                raise
            if self._ws.protocol != "sip":
                raise PhoneError(f"{url} agreed on subprotocol {self._ws.protocol!r}, not sip")
            self._reader = asyncio.create_task(self._read_ws(self._ws))
        return self

    async def close(self) -> None:
        self.closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    @property
    def contact(self) -> str:
        if self.transport == "ws":
            return f"sip:{self.user}@{self._invalid};transport=ws"
        host, port = self._local
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{self.user}@{host}:{port}{suffix}"

    def _via(self) -> str:
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        if self.transport == "ws":
            return f"SIP/2.0/WS {self._invalid};branch={branch};rport"
        host, port = self._local
        return f"SIP/2.0/{self.transport.upper()} {host}:{port};branch={branch};rport"

    async def _send(self, data: bytes) -> None:
        if self._udp is not None:
            self._udp.sendto(data, self.proxy)
        elif self._writer is not None:
            self._writer.write(data)
            await self._writer.drain()
        elif self._ws is not None:
            await self._ws.send_str(data.decode("utf-8", "surrogateescape"))
        else:
            raise PhoneError(f"{self!r} is not open")

    # --- requests -----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        ruri: str,
        body: str = "",
        *,
        to_uri: str | None = None,
        from_uri: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        timeout: float = 5.0,
    ) -> SipMessage:
        """Send one request; the final response (PhoneError when none came in time)."""
        call_id = f"{uuid.uuid4().hex}@{self.user}"
        data = body.encode()
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: {self._via()}",
            "Max-Forwards: 70",
            f"From: <{from_uri or self.aor}>;tag={self._tag}",
            f"To: <{to_uri or ruri}>",
            f"Call-ID: {call_id}",
            f"CSeq: {next(self._cseq)} {method}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        if data:
            lines.append("Content-Type: text/plain")
        lines.append(f"Content-Length: {len(data)}")
        future: asyncio.Future[SipMessage] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        try:
            await self._send(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise PhoneError(f"{self!r}: no final answer to {method} {ruri} {body!r}") from exc
        finally:
            self._pending.pop(call_id, None)

    async def register(self, expires: int = 600) -> SipMessage:
        reply = await self.request(
            "REGISTER", f"sip:{self.domain}", to_uri=self.aor,
            headers=(("Contact", f"<{self.contact}>"), ("Expires", str(expires))),
        )
        if reply.status != 200:
            raise PhoneError(f"REGISTER of {self!r}: {reply.start_line}")
        return reply

    async def message(self, ruri: str, body: str, timeout: float = 5.0) -> SipMessage:
        return await self.request("MESSAGE", ruri, body, timeout=timeout)

    # --- what arrives ---------------------------------------------------------------------

    def texts(self, sender: str | None = None) -> list[str]:
        return [r.text for r in self.received if sender is None or r.sender == sender]

    async def wait_for(
        self, done: Callable[[list[Received]], bool], timeout: float = 5.0
    ) -> list[Received]:
        """Wait until ``done(received)`` holds; PhoneError with what came otherwise."""
        deadline = time.monotonic() + timeout
        while not done(self.received):
            left = deadline - time.monotonic()
            if left <= 0:
                raise PhoneError(
                    f"{self!r} waited {timeout} s in vain; it has "
                    + repr([(r.sender, r.text) for r in self.received])
                )
            self._arrival.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival.wait(), left)
        return self.received

    async def wait_text(self, sender: str, text: str, timeout: float = 5.0) -> Received:
        """The first MESSAGE from ``sender`` with body ``text`` (waiting for it)."""
        def has(received: list[Received]) -> bool:
            return any(r.sender == sender and r.text == text for r in received)

        await self.wait_for(has, timeout)
        return next(r for r in self.received if r.sender == sender and r.text == text)

    # --- reading ------------------------------------------------------------------------

    def _reply(self, data: bytes) -> None:
        """Answer over the phone's connection (TCP or WebSocket)."""
        if self._writer is not None:
            self._writer.write(data)
        elif self._ws is not None:
            task = asyncio.ensure_future(self._ws.send_str(data.decode("utf-8", "surrogateescape")))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    def _on_data(self, data: bytes, reply: Callable[[bytes], object]) -> None:
        if not data.strip():
            return  # a keep-alive (CRLF)
        message = parse_sip_message(data)
        if not message.is_request:
            future = self._pending.get(message.call_id)
            if future is not None and not future.done() and message.status >= 200:
                future.set_result(message)
            return
        key = (message.call_id, message.header("cseq") or "", message.header("via") or "")
        answer = self._answered.get(key)
        if answer is None:
            answer = self._answer(message, 200 if message.method in ("MESSAGE", "OPTIONS")
                                  else 405)
            self._answered[key] = answer
            if message.method == "MESSAGE":
                self.received.append(Received(message, time.monotonic()))
                self._arrival.set()
        reply(answer)

    def _answer(self, request: SipMessage, status: int) -> bytes:
        reason = "OK" if status == 200 else "Method Not Allowed"
        to = request.header("to") or ""
        if ";tag=" not in to:
            to += f";tag={self._tag}"
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {via}" for via in request.header_values("via")]
        lines += [
            f"From: {request.header('from')}",
            f"To: {to}",
            f"Call-ID: {request.call_id}",
            f"CSeq: {request.header('cseq')}",
            "Content-Length: 0",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _read_stream(self, reader: asyncio.StreamReader) -> None:
        """SIP over TCP: messages framed by Content-Length (RFC 3261 §18.3)."""
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer.lstrip(b"\r\n"):
                chunk = await reader.read(65536)
                if not chunk:
                    return
                buffer += chunk
            buffer = buffer.lstrip(b"\r\n")
            head, _, rest = buffer.partition(b"\r\n\r\n")
            length = _content_length(head)
            while len(rest) < length:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                rest += chunk
            buffer = rest[length:]
            self._on_data(head + b"\r\n\r\n" + rest[:length], self._reply)

    async def _read_ws(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """SIP over WebSocket: one message per frame (RFC 7118 §5.2)."""
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                self._on_data(frame.data.encode("utf-8", "surrogateescape"), self._reply)
            elif frame.type == aiohttp.WSMsgType.BINARY:
                self._on_data(frame.data, self._reply)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"content-length", b"l"):
            return int(value.strip())
    return 0


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, phone: Phone) -> None:
        self.phone = phone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self.transport
        assert transport is not None
        self.phone._on_data(data, lambda answer: transport.sendto(answer, addr))
