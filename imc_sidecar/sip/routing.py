"""Where SIP messages go: the next hop of a request we send (RFC 3263 without DNS: a host
name goes to the transport as it is), and where the response to a request we received
goes (RFC 3261 §18.2.1, §18.2.2, RFC 3581 received/rport).

Pure functions, no state.
"""

from __future__ import annotations

from .grammar import find_param
from .headers import Via
from .message import Request
from .transaction import Peer
from .uri import UriError, parse_uri

__all__ = ["apply_received", "next_hop", "response_address", "stamp_via"]


def next_hop(uri: str) -> Peer | tuple[int, str]:
    """Next hop for a SIP URI (no DNS here: a host name goes to the edge as is)."""
    try:
        parsed = parse_uri(uri)
    except UriError as exc:
        if str(exc).startswith("unsupported scheme"):
            return 416, "Unsupported URI Scheme"
        return 400, "Invalid Request-URI"
    transport = parsed.transport or "udp"
    if parsed.scheme == "sips" or transport not in ("udp", "tcp"):
        return 503, f"Unsupported transport {transport if parsed.scheme == 'sip' else 'tls'}"
    host = parsed.host[1:-1] if parsed.host.startswith("[") else parsed.host
    return Peer(transport, (host, parsed.port or 5060))


def _bare_host(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def apply_received(request: Request, source: tuple[str, int]) -> Request:
    """Record where a request really came from in its top Via (RFC 3261 §18.2.1, RFC 3581).

    `received` is added when the sent-by host is not the source IP, and always when the
    client asked for rport; an empty `rport` gets the source port.
    """
    via = request.top_via
    new = stamp_via(via, source)
    if new is via:
        return request
    return request.with_top_via(new)


def stamp_via(via: Via, source: tuple[str, int]) -> Via:
    """`via` with received/rport filled in for a request that came from `source`."""
    host, port = source
    has_rport, rport = find_param(via.params, "rport")
    new = via
    if has_rport and not rport:
        new = new.with_param("rport", str(port)).with_param("received", host)
    elif _bare_host(via.host) != host:
        new = new.with_param("received", host)
    return new


def response_address(via: Via) -> tuple[str, int]:
    """Where a response goes over UDP: received (else sent-by host), rport (else port)."""
    host = via.received or _bare_host(via.host)
    port = via.rport or via.port or 5060
    return host, port
