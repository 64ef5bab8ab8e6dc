"""The demo's SIP users: one UDP socket each, on its own loopback address, port 5060.

A `Phone` sends MESSAGEs as a UAC (RFC 3261 §17.1.2: Timer E retransmissions over UDP,
doubling from T1 to T2, until a final response or Timer F) and answers every MESSAGE
it receives with a 200 that repeats the request's Via(s), From, To (a tag added),
Call-ID and CSeq.  A retransmitted request gets the same 200 again and is reported once.

A ghost's socket is bound but never answers.  Bound rather than absent, so the sidecar
sees a phone that went silent (no ICMP port-unreachable whose handling would depend on
its event loop): its invitation always ends by the sidecar's Timer F, 32 s.
"""

from __future__ import annotations

import asyncio
import errno
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import cast

from ..sip.message import ParseError, Request, Response
from ..sip.parse import parse_message
from ..sip.replies import response_bytes

__all__ = ["SIP_PORT", "T1", "T2", "TIMER_F", "Phone", "Reply", "open_phones"]

SIP_PORT = 5060  # members are addressed as sip:user@host, so the port is the default
T1 = 0.5
T2 = 4.0
TIMER_F = 64 * T1
_ANSWERED_MAX = 1024  # 200s kept to answer retransmissions again (T1, 3*T1, ... later)
USER_AGENT = "imc-sidecar-demo"

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int | None  # None: no final response before Timer F
    reason: str
    retransmissions: int
    seconds: float


class _Transaction:
    __slots__ = ("final", "provisional")

    def __init__(self, final: asyncio.Future[Response]) -> None:
        self.final = final
        self.provisional = False


class Phone(asyncio.DatagramProtocol):
    """One user: `send` requests from its socket; MESSAGEs it gets go to `on_message`."""

    def __init__(
        self,
        uri: str,
        host: str,
        on_message: Callable[[Phone, Request], None] | None = None,
        *,
        silent: bool = False,
    ) -> None:
        self.uri = uri
        self.host = host
        self.on_message = on_message
        self.silent = silent
        self.ignored = 0  # datagrams a silent phone let pass
        self.transport: asyncio.DatagramTransport | None = None
        self._pending: dict[str, _Transaction] = {}  # by Via branch
        self._answered: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._cseq = 0

    # -- asyncio.DatagramProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.silent:
            self.ignored += 1
            return
        try:
            message = parse_message(data)
        except ParseError:
            return  # nothing sensible to answer; the sender retransmits or gives up
        if isinstance(message, Response):
            self._response(message)
        else:
            self._request(message, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for our own requests: Timer E retransmits, Timer F decides.
        pass

    # -- UAS: answering --------------------------------------------------------------------

    def _request(self, request: Request, addr: Address) -> None:
        assert self.transport is not None
        if request.method == "ACK":
            return
        key = (request.top_via.branch or "", request.call_id, str(request.cseq))
        answer = self._answered.get(key)
        if answer is not None:  # a retransmission: the same 200, reported once
            self.transport.sendto(answer, addr)
            return
        if request.method in ("MESSAGE", "OPTIONS"):
            answer = response_bytes(request, 200, "OK", to_tag=secrets.token_hex(4))
        else:
            answer = response_bytes(request, 405, "Method Not Allowed",
                                    to_tag=secrets.token_hex(4),
                                    headers=[("Allow", "MESSAGE, OPTIONS")])
        self._answered[key] = answer
        if len(self._answered) > _ANSWERED_MAX:
            self._answered.popitem(last=False)
        # To the source address: that is the sidecar socket that sent it (rport-style).
        self.transport.sendto(answer, addr)
        if request.method == "MESSAGE" and self.on_message is not None:
            self.on_message(self, request)

    # -- UAC: sending ----------------------------------------------------------------------

    def _response(self, response: Response) -> None:
        txn = self._pending.get(response.top_via.branch or "")
        if txn is None or response.cseq[1] != "MESSAGE" or txn.final.done():
            return  # stray, or a retransmitted final response
        if response.status < 200:
            txn.provisional = True
        else:
            txn.final.set_result(response)

    def _build(self, request_uri: str, body: bytes, branch: str) -> bytes:
        self._cseq += 1
        head = (
            f"MESSAGE {request_uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{SIP_PORT};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <{self.uri}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <{request_uri}>\r\n"
            f"Call-ID: {secrets.token_hex(8)}@{self.host}\r\n"
            f"CSeq: {self._cseq} MESSAGE\r\n"
            f"User-Agent: {USER_AGENT}\r\n"
            "Content-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def send(self, target: Address, request_uri: str, text: str) -> Reply:
        """Send one MESSAGE to `target`; the final status, or None after Timer F."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        branch = "z9hG4bK" + secrets.token_hex(10)
        data = self._build(request_uri, text.encode(), branch)
        txn = _Transaction(loop.create_future())
        self._pending[branch] = txn
        began = loop.time()
        interval, retransmissions = T1, 0
        try:
            self.transport.sendto(data, target)
            while True:
                left = began + TIMER_F - loop.time()
                if left <= 0:
                    return Reply(None, "Request Timeout", retransmissions, loop.time() - began)
                try:
                    response = await asyncio.wait_for(
                        asyncio.shield(txn.final), min(interval, left)
                    )
                except TimeoutError:
                    if loop.time() - began >= TIMER_F:
                        continue
                    self.transport.sendto(data, target)  # Timer E
                    retransmissions += 1
                    # §17.1.2.2: doubling up to T2; every T2 once a provisional came.
                    interval = T2 if txn.provisional else min(2 * interval, T2)
                    continue
                return Reply(response.status, response.reason, retransmissions,
                             loop.time() - began)
        finally:
            del self._pending[branch]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class BindError(OSError):
    """A user's address cannot be bound; the message says what to do."""


async def open_phones(
    people: Iterable[tuple[str, str, bool]],
    on_message: Callable[[Phone, Request], None],
) -> dict[str, Phone]:
    """Bind a Phone for each (uri, host, ghost), by URI; all or none."""
    loop = asyncio.get_running_loop()
    phones: dict[str, Phone] = {}
    try:
        for uri, host, ghost in people:
            try:
                _, phone = await loop.create_datagram_endpoint(
                    partial(Phone, uri, host, on_message, silent=ghost),
                    local_addr=(host, SIP_PORT),
                )
            except OSError as exc:
                raise BindError(exc.errno, _bind_advice(host, exc)) from None
            phones[uri] = phone
    except BaseException:
        for phone in phones.values():
            phone.close()
        raise
    return phones


def _bind_advice(host: str, exc: OSError) -> str:
    where = f"cannot bind udp {host}:{SIP_PORT}: {exc.strerror or exc}"
    if exc.errno == errno.EADDRINUSE:
        return where + " (another demo on this network? choose another with --net)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return where + " (Linux routes all of 127.0.0.0/8 to lo; elsewhere add the address)"
    if exc.errno == errno.EMFILE:
        return where + " (too many open files: fewer --users, or raise ulimit -n)"
    return where
