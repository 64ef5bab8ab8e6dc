"""The sans-I/O SIP endpoint: bytes and time in, events and bytes to send out.

It answers what a chat server must answer by itself (OPTIONS, 405, 481, 483, 400),
hands each new MESSAGE to the application exactly once, sends MESSAGEs shaped like
Kamailio tm's local requests, and runs the transactions.  The asyncio edge calls
`receive`/`handle_timer`/`transport_error`, then drains `transmits()` and re-arms one
timer at `get_timer()`.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .headers import parse_via
from .ids import IdSource
from .message import ParseCache, ParseError, Request, Response
from .parse import parse_message
from .replies import reply_bytes, reply_headers, to_has_tag
from .routing import apply_received, next_hop, response_address, stamp_via
from .scan import scan_request, scan_response
from .transaction import (
    Address,
    Peer,
    RequestCompleted,
    ServerKey,
    ServerTransaction,
    Timers,
    TransactionLayer,
    Transmit,
)

__all__ = [
    "Address",
    "EndpointConfig",
    "Peer",
    "RequestCompleted",
    "RequestReceived",
    "ServerHandle",
    "SipEndpoint",
    "Transmit",
]

log = logging.getLogger(__name__)

_MAGIC = "z9hG4bK"  # RFC 3261 §8.1.1.7 branch prefix
_UNSAFE_URI = re.compile(r"[\s<>]")  # would break the header line the URI is written into
_HOP_CACHE_MAX = 4096


class ServerHandle:
    """Opaque: identifies the server transaction that `reply()` answers."""

    __slots__ = ("_request", "_to_tag", "_txn")

    def __init__(self, txn: ServerTransaction, request: Request) -> None:
        self._txn = txn
        self._request: Request | None = request  # dropped after the final response
        self._to_tag: str | None = None


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the application (never a retransmission)."""

    request: Request
    peer: Peer
    handle: ServerHandle  # pass back to reply()


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    via_address: dict[str, Address]  # per transport, the host/port we put in Via
    outbound_proxy: str | None = None  # next hop of every request we send, when set
    user_agent: str = "imc-sidecar"
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    allowed_methods: tuple[str, ...] = ("MESSAGE", "OPTIONS")
    # Whether a source IP may send us SIP (policy/sources.py); None: anyone may.
    trusted: Callable[[str], bool] | None = None


def _pct(text: str) -> str:
    """`text` made literal inside a %-template."""
    return text.replace("%", "%%")


def _server_key(request: Request, method: str) -> ServerKey:
    """Transaction key of a request (RFC 3261 §17.2.3), for `method`'s transaction."""
    via = request.top_via
    branch = via.branch
    if branch is not None and branch.startswith(_MAGIC):
        return (branch, via.sent_by.lower(), method)
    # RFC 2543 peers: no usable branch, so match on the request's identity.
    number = request.cseq[0]
    top = request.headers.get("Via") or ""
    return (request.call_id, str(number), method, request.from_tag or "", top, request.uri)


class SipEndpoint:
    def __init__(self, config: EndpointConfig, ids: IdSource | None = None) -> None:
        self.config = config
        self._ids = ids or IdSource()
        self._layer = TransactionLayer(Timers(config.t1, config.t2, config.t4))
        self._allow = ", ".join(config.allowed_methods)
        self._server_header = ("Server", config.user_agent)
        self._reply_headers = reply_headers([self._server_header])  # checked once
        # Per transport: the Via prefix and the Call-ID suffix, built once.
        self._via: dict[str, tuple[str, str]] = {}
        for transport, (host, port) in config.via_address.items():
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"
            self._via[transport.lower()] = (f"SIP/2.0/{transport.upper()} {host}:{port}", host)
        self._proxy: Peer | tuple[int, str] | None = None
        if config.outbound_proxy:
            self._proxy = next_hop(config.outbound_proxy)
            if not isinstance(self._proxy, Peer):
                raise ValueError(f"bad outbound_proxy {config.outbound_proxy!r}")
        self._targets: dict[str, tuple[Peer | tuple[int, str], bytes | None]] = {}
        self._deferred: list[tuple[float, RequestCompleted]] = []
        self._reply_peers: dict[Address, Peer] = {}  # where UDP replies go, by address
        self._parsed = ParseCache()  # header names, To and CSeq values seen before
        self._trusted = config.trusted
        self.untrusted_requests = 0  # answered 403: their source is not trusted
        self.untrusted_responses = 0  # ignored: their source is not trusted

    @property
    def pending_requests(self) -> int:
        """Requests we sent that have not been reported completed yet."""
        return self._layer.in_flight + len(self._deferred)

    # --- input ----------------------------------------------------------------------------

    def receive(
        self, data: bytes, peer: Peer, now: float
    ) -> list[RequestReceived | RequestCompleted]:
        # From outside trusted_sources (policy/sources.py): a response is ignored, so
        # nobody can answer for a member; a request is answered 403 through its server
        # transaction (which absorbs retransmissions); junk gets no answer at all.
        trusted = self._trusted is None or self._trusted(peer.address[0])
        if data[:8] == b"SIP/2.0 ":
            if not trusted:
                self.untrusted_responses += 1
                return []
            # Most of what arrives: the answers to our chat copies.  Read only what
            # matching needs; anything unusual is parsed fully below.
            scanned = scan_response(data)
            if scanned is not None:
                status, reason, branch, method = scanned
                if branch is None:
                    return []
                done = self._layer.client_response(branch, method, status, reason, now)
                return [] if done is None else [done]
        elif data[:1] in b"\r\n" and not data.strip(b"\r\n"):
            return []  # a CRLF keep-alive datagram (or nothing)
        else:
            # Requests: chat texts are plainly written; anything else is parsed fully.
            request = scan_request(data, self._parsed)
            if request is not None:
                return self._on_request(request, peer, now, trusted)
        try:
            message = parse_message(data, self._parsed)
        except ParseError as exc:
            if trusted:
                self._reject(exc, peer)
            return []
        if isinstance(message, Response):
            if not trusted:  # a status line in another spelling ("sip/2.0")
                self.untrusted_responses += 1
                return []
            branch = message.top_via.branch
            if branch is None:
                return []
            done = self._layer.client_response(
                branch, message.cseq[1], message.status, message.reason, now
            )
            return [] if done is None else [done]
        return self._on_request(message, peer, now, trusted)

    def _on_request(
        self, request: Request, peer: Peer, now: float, trusted: bool = True
    ) -> list[RequestReceived | RequestCompleted]:
        method = request.method
        if method == "ACK":
            return []  # never answered; we keep no INVITE transactions to absorb it
        key = _server_key(request, method)
        if self._layer.server_match(key, now):
            return []  # a retransmission, handled by its transaction
        original = request  # RFC 2543 keys hold the Via as received, before stamping
        request = apply_received(request, peer.address)
        if peer.transport != "udp":
            dest = peer
        else:
            address = response_address(request.top_via)
            reply_peer = self._reply_peers.get(address)  # senders repeat: one Peer each
            if reply_peer is None:
                if len(self._reply_peers) >= _HOP_CACHE_MAX:
                    self._reply_peers.clear()
                reply_peer = self._reply_peers[address] = Peer("udp", address)
            dest = reply_peer
        handle = ServerHandle(self._layer.server_start(key, dest), request)
        # Validated when parsed (`_build_message`): None or at most three digits.
        forwards = request.headers.first("max-forwards")
        if not trusted:
            self.untrusted_requests += 1
            self._respond(handle, 403, "Forbidden", now)
        elif forwards is not None and int(forwards) == 0:
            self._respond(handle, 483, "Too Many Hops", now)
        elif method == "CANCEL":
            # Nothing we run can be cancelled; a matching request only makes it a 200.
            known = any(
                _server_key(original, m) in self._layer.servers
                for m in (*self.config.allowed_methods, "INVITE")
            )
            if known:
                self._respond(handle, 200, "OK", now)
            else:
                self._respond(handle, 481, "Call/Transaction Does Not Exist", now)
        elif method not in self.config.allowed_methods:
            self._respond(handle, 405, "Method Not Allowed", now, [("Allow", self._allow)])
        elif method == "OPTIONS":
            extra = [("Allow", self._allow), ("Accept", "text/plain, */*")]
            self._respond(handle, 200, "OK", now, extra)
        else:
            return [RequestReceived(request, peer, handle)]
        return []

    def _reject(self, exc: ParseError, peer: Peer) -> None:
        """Answer a malformed request statelessly when it can be addressed; else drop it."""
        headers = exc.headers
        if exc.method is None or exc.method == "ACK" or headers is None:
            log.debug("dropped malformed message from %s: %s", peer.address, exc)
            return
        via = None
        if all(name in headers for name in ("From", "To", "Call-ID", "CSeq")):
            with contextlib.suppress(ParseError):
                via = stamp_via(parse_via(headers.get("Via") or ""), peer.address)
        if via is None:
            log.debug("dropped malformed request from %s: %s", peer.address, exc)
            return
        log.info("rejecting request from %s: %s", peer.address, exc)
        data = reply_bytes(headers, exc.status, exc.reason, self._ids.tag(), self._reply_headers)
        dest = peer if peer.transport != "udp" else Peer("udp", response_address(via))
        self._layer.queue(Transmit(data, dest))

    # --- replies --------------------------------------------------------------------------

    def reply(
        self,
        handle: ServerHandle,
        status: int,
        reason: str,
        now: float,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        """Send the application's response (with extra `headers`, e.g. Retry-After);
        retransmissions are then answered by the transaction.  A reply after the final
        one is ignored."""
        self._respond(handle, status, reason, now, headers)

    def _respond(
        self,
        handle: ServerHandle,
        status: int,
        reason: str,
        now: float,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        request = handle._request
        if request is None:
            log.debug("reply %d ignored: the transaction already has its final response", status)
            return
        if handle._to_tag is None:
            handle._to_tag = self._ids.tag()  # the same tag for a 1xx and the final reply
        headers = (
            self._reply_headers if extra is None else reply_headers([*extra, self._server_header])
        )
        data = reply_bytes(
            request.headers, status, reason, handle._to_tag, headers, to_has_tag(request)
        )
        self._layer.server_send(handle._txn, status, data, now)
        if status >= 200:
            handle._request = None

    # --- requests we send -----------------------------------------------------------------

    def send_many(
        self,
        request_uris: Iterable[str],
        from_uri: str,
        body: bytes,
        extra_headers: bytes,
        context: object,
        now: float,
    ) -> None:
        """Queue one MESSAGE per URI, shaped like Kamailio tm's (imc-reference §2.4),
        each with the same From and body.

        Every copy ends in exactly one RequestCompleted: from a response, a timer, a
        transport error, or (when the request cannot even be built) the next
        handle_timer().

        The message is serialized once per transport as a template; each copy only
        fills in its Request-URI and To, Via branch, From tag and Call-ID.
        """
        if extra_headers and not extra_headers.endswith(b"\n"):
            # As tm does; checking LF (not CRLF) avoids making an empty line of a bare LF.
            extra_headers += b"\r\n"
        from_ok = _UNSAFE_URI.search(from_uri) is None
        templates: dict[str, bytes] = {}
        proxy = self._proxy
        request_ids = self._ids.request_ids
        start = self._layer.client_start
        targets = self._targets
        for request_uri in request_uris:
            target = targets.get(request_uri) or self._target(request_uri)
            hop = proxy or target[0]
            if isinstance(hop, tuple):
                self._deferred.append((now, RequestCompleted(context, *hop)))
                continue
            uri = target[1]
            if uri is None or not from_ok:
                self._deferred.append((now, RequestCompleted(context, 400, "Invalid URI")))
                continue
            template = templates.get(hop.transport)
            if template is None:
                template = self._template(hop.transport, from_uri, body, extra_headers)
                if template is None:
                    reason = f"No {hop.transport} transport"
                    self._deferred.append((now, RequestCompleted(context, 503, reason)))
                    continue
                templates[hop.transport] = template
            branch, tag, call_id = request_ids()
            branch = _MAGIC + branch
            data = template % (uri, branch.encode(), uri, tag.encode(), call_id.encode())
            start(branch, "MESSAGE", data, hop, context, now)

    def _template(
        self, transport: str, from_uri: str, body: bytes, extra_headers: bytes
    ) -> bytes | None:
        """The whole MESSAGE with `%s` where R-URI, branch, To URI, tag, Call-ID go."""
        via = self._via.get(transport)
        if via is None:
            return None
        head = (
            "MESSAGE %s SIP/2.0\r\n"
            f"Via: {_pct(via[0])};branch=%s;rport\r\n"
            "To: <%s>\r\n"
            f"From: <{_pct(from_uri)}>;tag=%s\r\n"
            "CSeq: 10 MESSAGE\r\n"
            f"Call-ID: %s@{_pct(via[1])}\r\n"
            "Max-Forwards: 70\r\n"
        )
        tail = f"User-Agent: {self.config.user_agent}\r\nContent-Length: {len(body)}\r\n\r\n"
        return b"".join(
            (
                head.encode("utf-8", "surrogateescape"),
                extra_headers.replace(b"%", b"%%"),
                _pct(tail).encode("utf-8", "surrogateescape"),
                body.replace(b"%", b"%%"),
            )
        )

    def _target(self, uri: str) -> tuple[Peer | tuple[int, str], bytes | None]:
        """Next hop of a Request-URI, and the URI as bytes (None: unusable in a header)."""
        target = self._targets.get(uri)
        if target is None:
            if len(self._targets) >= _HOP_CACHE_MAX:
                self._targets.clear()
            written = None if _UNSAFE_URI.search(uri) else uri.encode("utf-8", "surrogateescape")
            target = self._targets[uri] = (next_hop(uri), written)
        return target

    def split_udp(self, request_uris: Iterable[str]) -> tuple[list[str], list[str]]:
        """(the URIs whose MESSAGE would leave over UDP, the others), both in order: the
        next hop is the outbound proxy when there is one, else the URI itself."""
        udp: list[str] = []
        other: list[str] = []
        proxy = self._proxy
        if proxy is not None:
            (udp if isinstance(proxy, Peer) and proxy.transport == "udp" else other).extend(
                request_uris
            )
            return udp, other
        targets = self._targets
        for uri in request_uris:
            target = targets.get(uri)
            hop = (self._target(uri) if target is None else target)[0]
            if isinstance(hop, Peer) and hop.transport == "udp":
                udp.append(uri)
            else:
                other.append(uri)
        return udp, other

    def transport_error(self, peer: Peer, now: float) -> list[RequestCompleted]:
        """The edge could not send to `peer`: every request in flight to it fails (503)."""
        return self._layer.client_transport_error(peer, now)

    # --- time and output --------------------------------------------------------------------

    def handle_timer(self, now: float) -> list[RequestCompleted]:
        done: list[RequestCompleted] = []
        if self._deferred:
            due = [item for item in self._deferred if item[0] <= now]
            if due:
                self._deferred = [item for item in self._deferred if item[0] > now]
                done.extend(result for _, result in due)
        done.extend(self._layer.handle_timer(now))
        return done

    def get_timer(self) -> float | None:
        deadline = self._layer.next_deadline()
        if self._deferred:
            first = min(at for at, _ in self._deferred)
            deadline = first if deadline is None else min(deadline, first)
        return deadline

    def transmits(self) -> list[Transmit]:
        return self._layer.transmits()
