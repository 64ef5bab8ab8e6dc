"""Each setting's rule: its raw value (text from a flag or a variable, or a TOML value)
to its typed value, or `BadValue` saying what it must be.  `SPECS` lists every setting
with its rule and help, in the order `--help` shows them.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imc_sidecar.imc.headers import validate_extra_hdrs
from imc_sidecar.sip.grammar import port_number
from imc_sidecar.sip.uri import UriError, parse_uri
from imc_sidecar.store.urls import to_async_url

from .model import (
    DEFAULT_DB_CONNECT_TIMEOUT,
    DEFAULT_DB_STATEMENT_TIMEOUT,
    DEFAULT_DB_URL,
    DEFAULT_DELIVERY_PORT,
    DEFAULT_FEED_INTERVAL,
    DEFAULT_FEED_RETENTION,
    DEFAULT_HISTORY_FLUSH,
    DEFAULT_HISTORY_QUEUE,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_MEMBERS_PER_ROOM,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_ROOMS,
    DEFAULT_MAX_ROOMS_PER_USER,
    DEFAULT_RPC_BINRPC_PORT,
    DEFAULT_RPC_DGRAM_PORT,
    DEFAULT_RPC_HTTP_PORT,
    DEFAULT_SENDER_BURST,
    DEFAULT_SENDER_RATE,
    DEFAULT_SIP_PORT,
    DEFAULT_SIP_TCP_IDLE_TIMEOUT,
    DEFAULT_SIP_TCP_MAX_BUFFER,
    DEFAULT_SIP_TCP_MAX_CONNECTIONS,
    DEFAULT_SIP_TCP_MAX_PER_SOURCE,
    MAX_DELIVERY_WORKERS,
    MAX_HASH_SIZE,
    MAX_RETENTION_DAYS,
    MIN_TOKEN_LENGTH,
    Listen,
    Network,
    RpcAddress,
)

__all__ = ["ADDRESS_LISTS", "NAMES", "SPECS", "BadValue", "Spec"]

_EVENT_LOOPS = ("auto", "uvloop", "asyncio")
_TRANSPORTS = ("udp", "tcp")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TABLE_RE = re.compile(r"[a-z_][a-z0-9_]{0,31}")  # version.table_name is VARCHAR(32)
_HOSTNAME_RE = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9\-.]+")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")



class BadValue(Exception):
    """Raised by a rule: says what the value must be."""


# --- parsers: raw value (text from env/CLI, or a TOML value) -> typed value ---------


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise BadValue("must be a string")
    return raw


def _integer(raw: object, low: int, high: int, what: str) -> int:
    if isinstance(raw, bool):
        raise BadValue(what)
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
        try:
            value = int(raw)
        except ValueError:  # more digits than int() converts
            raise BadValue(what) from None
    else:
        raise BadValue(what)
    if not low <= value <= high:
        raise BadValue(what)
    return value


def _db_url(raw: object) -> str:
    text = _text(raw).strip()
    try:
        to_async_url(text)
    except ValueError as exc:
        raise BadValue(str(exc)) from None
    return text


def _db_mode(raw: object) -> int:
    what = "must be 0 (memory only) or 2 (write-through)"
    value = _integer(raw, 0, 2, what)
    if value == 1:
        raise BadValue(what)
    return value


def _table(raw: object) -> str:
    text = _text(raw).strip()
    if not _TABLE_RE.fullmatch(text) or text == "version":
        raise BadValue("must be a lower-case SQL table name of at most 32 characters "
                   "(a-z, 0-9, _), other than 'version'")
    return text


def _hash_size(raw: object) -> int:
    return _integer(raw, 1, MAX_HASH_SIZE, f"must be an integer between 1 and {MAX_HASH_SIZE}")


def _start_char(raw: object) -> str:
    text = _text(raw)
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise BadValue("must be a non-empty string without spaces or control characters")
    return text


def _outbound_proxy(raw: object) -> str | None:
    text = _text(raw).strip()
    if not text:
        return None
    try:
        uri = parse_uri(text)
    except UriError as exc:
        raise BadValue(f"must be a SIP URI such as sip:127.0.0.1:5060 ({exc})") from None
    if uri.scheme != "sip":
        raise BadValue("must be a sip: URI (TLS is not supported)")
    if uri.transport not in (None, *_TRANSPORTS):
        raise BadValue("transport must be udp or tcp")
    return text


def _extra_hdrs(raw: object) -> str:
    """Decode the escapes and line breaks a flag or variable can hold, then apply the one
    rule for the block (`validate_extra_hdrs`, also what imc sends with)."""
    decoded = re.sub(r"\\(\\|r\\n|n|r)",
                     lambda m: "\\" if m.group(1) == "\\" else "\n", _text(raw))
    lines = re.split(r"\r\n|\n|\r", decoded)
    if lines[-1] == "":
        lines.pop()
    try:
        return validate_extra_hdrs("\r\n".join(lines))
    except ValueError as exc:
        raise BadValue(str(exc)) from None


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise BadValue("must be 0 or 1 (or true/false)")


def _sip_listen(raw: object) -> tuple[Listen, ...]:
    items: list[str] = []
    parts = raw if isinstance(raw, list) else [raw]
    for part in parts:
        items.extend(item.strip() for item in _text(part).split(",") if item.strip())
    if not items:
        raise BadValue("needs at least one address such as udp:127.0.0.1:5090")
    found: list[Listen] = []
    for item in items:
        for listen in _listen(item):
            if listen in found:
                raise BadValue(f"{listen} is listed twice")
            found.append(listen)
    return tuple(found)


def _listen(item: str) -> list[Listen]:
    """`[udp:|tcp:]host[:port]`; without a transport, both (as Kamailio's listen=)."""
    what = f"'{item}' must look like udp:127.0.0.1:{DEFAULT_SIP_PORT} or tcp:[::1]:5090"
    head, colon, rest = item.partition(":")
    transports: tuple[str, ...] = _TRANSPORTS
    if colon and head.lower() in _TRANSPORTS:
        transports, item = (head.lower(),), rest
    if item.startswith("["):
        host, bracket, tail = item[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise BadValue(what)
        port_text = tail[1:]
    elif item.count(":") > 1:
        host, port_text = item, ""  # bare IPv6 address, no port
    else:
        host, _, port_text = item.partition(":")
    if not _valid_host(host):
        raise BadValue(what)
    port = DEFAULT_SIP_PORT
    if port_text:
        number = port_number(port_text)
        if number is None:
            raise BadValue(what)
        port = number
    return [Listen(t, host, port) for t in transports]


def _trusted_sources(raw: object) -> tuple[Network, ...]:
    items: list[str] = []
    for part in raw if isinstance(raw, list) else [raw]:
        items.extend(item.strip() for item in _text(part).split(",") if item.strip())
    if not items:
        raise BadValue("needs at least one address or network, such as 10.0.0.0/8")
    found: list[Network] = []
    for item in items:
        try:
            network = ipaddress.ip_network(item.strip("[]"), strict=True)
        except ValueError as exc:
            raise BadValue(
                f"'{item}' must be an IP address or a network such as 192.0.2.0/24 ({exc})"
            ) from None
        if network not in found:
            found.append(network)
    return tuple(found)


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOSTNAME_RE.fullmatch(host))
    return True


def _rpc_addresses(kinds: tuple[str, ...], default_port: int) -> Callable[[object], Any]:
    """A parser for a list of RPC addresses; a bare HOST:PORT means kinds[0]."""
    example = f"{kinds[0]}:127.0.0.1:{default_port} or unix:/run/imc-sidecar/rpc.sock"

    def parse(raw: object) -> tuple[RpcAddress, ...]:
        items: list[str] = []
        for part in raw if isinstance(raw, list) else [raw]:
            items.extend(item.strip() for item in _text(part).split(",") if item.strip())
        if [item.lower() for item in items] in ([], ["off"]):
            return ()
        found: list[RpcAddress] = []
        for item in items:
            address = _rpc_address(item, kinds, default_port, example)
            if address in found:
                raise BadValue(f"{address} is listed twice")
            found.append(address)
        return tuple(found)

    return parse


def _rpc_address(item: str, kinds: tuple[str, ...], port: int, example: str) -> RpcAddress:
    head, colon, rest = item.partition(":")
    if colon and head.lower() == "unix":
        if not rest or "\x00" in rest:
            raise BadValue(f"'{item}' needs a socket path, e.g. {example}")
        return RpcAddress("unix", path=rest)
    kind = kinds[0]
    if colon and head.lower() in ("tcp", "udp"):
        if head.lower() not in kinds:
            raise BadValue(f"'{item}': {head.lower()} is not possible here; use {example}")
        kind, item = head.lower(), rest
    try:
        (listen,) = _listen(f"udp:{item}")
    except BadValue:
        raise BadValue(f"'{item}' must look like {example}") from None
    # A port was given unless this is "[v6]" or a bare IPv6 address (several colons).
    tail = item.rpartition("]")[2] if item.startswith("[") else item
    explicit = tail.count(":") == 1
    return RpcAddress(kind, listen.host, listen.port if explicit else port)


def _fifo(raw: object) -> str | None:
    text = _text(raw).strip()
    if text.lower() in ("", "off"):
        return None
    if "\x00" in text:
        raise BadValue("must be a file path")
    return text


def _reply_dir(raw: object) -> str:
    text = _text(raw).strip()
    if not text or "\x00" in text:
        raise BadValue("must be a directory path")
    return text


def _token(raw: object) -> str | None:
    text = _text(raw).strip()
    if not text:
        return None
    if len(text) < MIN_TOKEN_LENGTH or not text.isascii() or not text.isprintable() or (
        " " in text
    ):
        raise BadValue(f"must be at least {MIN_TOKEN_LENGTH} printable ASCII characters, "
                   "no spaces")
    return text


def _event_loop(raw: object) -> str:
    text = _text(raw).strip().lower()
    if text not in _EVENT_LOOPS:
        raise BadValue(f"must be one of {', '.join(_EVENT_LOOPS)}")
    if text == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise BadValue("uvloop is not installed (pip install uvloop, or use auto/asyncio)")
    return text


def _max_pending(raw: object) -> int:
    return _integer(raw, 0, 10_000_000, "must be an integer from 0 (no limit) to 10000000")


def _max_body(raw: object) -> int:
    return _integer(raw, 0, 1024 * 1024, "must be a number of bytes from 0 (any) to 1048576")


def _count_limit(raw: object) -> int:
    return _integer(raw, 0, 100_000_000, "must be an integer from 0 (no limit) to 100000000")


def _connections(raw: object) -> int:
    return _integer(raw, 0, 1_000_000, "must be a number of connections from 0 (no limit) "
                    "to 1000000")


def _tcp_buffer(raw: object) -> int:
    return _integer(raw, 65_536, 1 << 30, "must be a number of bytes from 65536 to 1073741824")


def _sender_burst(raw: object) -> int:
    return _integer(raw, 1, 1_000_000, "must be an integer from 1 to 1000000")


def _delivery_workers(raw: object) -> int:
    return _integer(raw, 0, MAX_DELIVERY_WORKERS,
                    f"must be an integer from 0 (none) to {MAX_DELIVERY_WORKERS}")


def _port_or_zero(raw: object) -> int:
    return _integer(raw, 0, 65535, "must be a port number (1-65535) or 0 (ephemeral)")


def _history_db_url(raw: object) -> str | None:
    text = _text(raw).strip()
    return _db_url(text) if text else None


def _number(raw: object, low: float, high: float, what: str) -> float:
    """A number (not a flag) from `low` to `high`, as text or a TOML number."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            raise BadValue(what) from None
    else:
        raise BadValue(what)
    if not low <= value <= high:  # also refuses nan
        raise BadValue(what)
    return value


def _rate(raw: object) -> float:
    return _number(raw, 0, 1_000_000,
                   "must be a number of texts per second from 0 (no limit) to 1000000")


def _seconds(low: float, high: float) -> Callable[[object], float]:
    def parse(raw: object) -> float:
        return _number(raw, low, high, f"must be a number of seconds from {low:g} to {high:g}")

    return parse


def _history_queue(raw: object) -> int:
    return _integer(raw, 100, 100_000_000, "must be an integer from 100 to 100000000")


def _retention(raw: object) -> int:
    return _integer(raw, 0, MAX_RETENTION_DAYS,
                    f"must be a number of days from 0 (keep all) to {MAX_RETENTION_DAYS}")


def _log_level(raw: object) -> str:
    text = _text(raw).strip().lower()
    if text not in _LOG_LEVELS:
        raise BadValue(f"must be one of {', '.join(_LOG_LEVELS)}")
    return text


@dataclass(frozen=True)
class Spec:
    name: str
    parse: Callable[[object], Any]
    help: str
    metavar: str


SPECS = (
    Spec("db_url", _db_url, f"database URL (default {DEFAULT_DB_URL})", "URL"),
    Spec("db_mode", _db_mode, "0 = memory only, 2 = write-through (default 2)", "0|2"),
    Spec("db_connect_timeout", _seconds(0.1, 300.0),
          f"seconds to connect to the database (default {DEFAULT_DB_CONNECT_TIMEOUT:g})",
          "SECONDS"),
    Spec("db_statement_timeout", _seconds(0.1, 3600.0),
          f"seconds a write may take before the database counts as down (default "
          f"{DEFAULT_DB_STATEMENT_TIMEOUT:g})", "SECONDS"),
    Spec("feed_interval", _seconds(0.01, 1.0),
          f"seconds between reads of the change feed other sidecars write (default "
          f"{DEFAULT_FEED_INTERVAL:g})", "SECONDS"),
    Spec("feed_retention", _seconds(60.0, 30 * 86400.0),
          f"seconds a change-feed row is kept (default {DEFAULT_FEED_RETENTION:g})",
          "SECONDS"),
    Spec("rooms_table", _table, "rooms table (default imc_rooms)", "NAME"),
    Spec("members_table", _table, "members table (default imc_members)", "NAME"),
    Spec("hash_size", _hash_size, "room table has 2^N buckets (default 4)", "N"),
    Spec("imc_cmd_start_char", _start_char, "command prefix (default #)", "CHAR"),
    Spec("outbound_proxy", _outbound_proxy, "next hop for sent MESSAGEs (SIP URI)", "URI"),
    Spec("extra_hdrs", _extra_hdrs, r"headers for sent MESSAGEs, lines split by \r\n",
          "HEADERS"),
    Spec("create_on_join", _flag, "#join creates a missing room (default 1)", "0|1"),
    Spec("check_on_create", _flag, "#create of an existing room fails (default 0)", "0|1"),
    Spec("sip_listen", _sip_listen,
          f"SIP socket(s), e.g. udp:127.0.0.1:{DEFAULT_SIP_PORT}; repeat or comma-separate",
          "ADDR"),
    Spec("trusted_sources", _trusted_sources,
          "addresses and networks allowed to send SIP, repeat or comma-separate "
          "(default 127.0.0.0/8,::1; required when sip_listen is not loopback)", "NETS"),
    Spec("sip_tcp_max_connections", _connections,
          f"SIP TCP connections peers may hold open (default "
          f"{DEFAULT_SIP_TCP_MAX_CONNECTIONS}; 0: no limit)", "N"),
    Spec("sip_tcp_max_per_source", _connections,
          f"SIP TCP connections one source address may hold open (default "
          f"{DEFAULT_SIP_TCP_MAX_PER_SOURCE}; 0: no limit)", "N"),
    Spec("sip_tcp_idle_timeout", _seconds(1.0, 86_400.0),
          f"close a SIP TCP connection after this many seconds without a complete message, "
          f"keep-alive or data sent (default {DEFAULT_SIP_TCP_IDLE_TIMEOUT:g})", "SECONDS"),
    Spec("sip_tcp_max_buffer", _tcp_buffer,
          f"close a SIP TCP connection whose peer leaves more than this many bytes unread "
          f"(default {DEFAULT_SIP_TCP_MAX_BUFFER})", "BYTES"),
    Spec("log_level", _log_level, "debug, info, warning, error or critical (default info)",
          "LEVEL"),
    Spec("rpc_http", _rpc_addresses(("tcp",), DEFAULT_RPC_HTTP_PORT),
          f"JSON-RPC over HTTP, HOST:PORT or unix:PATH (default 127.0.0.1:"
          f"{DEFAULT_RPC_HTTP_PORT}; 'off' disables)", "ADDR"),
    Spec("rpc_dgram", _rpc_addresses(("udp",), DEFAULT_RPC_DGRAM_PORT),
          f"JSON-RPC datagrams, udp:HOST:PORT or unix:PATH (default udp:127.0.0.1:"
          f"{DEFAULT_RPC_DGRAM_PORT}; 'off' disables)", "ADDR"),
    Spec("rpc_binrpc", _rpc_addresses(("tcp",), DEFAULT_RPC_BINRPC_PORT),
          f"BINRPC (kamcmd), tcp:HOST:PORT or unix:PATH (default tcp:127.0.0.1:"
          f"{DEFAULT_RPC_BINRPC_PORT}; 'off' disables)", "ADDR"),
    Spec("rpc_fifo", _fifo, "JSON-RPC FIFO path for kamctl (default: off)", "PATH"),
    Spec("rpc_fifo_reply_dir", _reply_dir, "directory of FIFO reply files (default /tmp)",
          "DIR"),
    Spec("rpc_token", _token,
          "bearer token for HTTP RPC; required off loopback (prefer IMC_RPC_TOKEN)", "TOKEN"),
    Spec("event_loop", _event_loop, "auto (uvloop when installed), uvloop or asyncio",
          "LOOP"),
    Spec("max_pending_deliveries", _max_pending,
          f"refuse chat texts (503) above this many unanswered MESSAGEs sent (default "
          f"{DEFAULT_MAX_PENDING}; 0: no limit)", "N"),
    Spec("delivery_workers", _delivery_workers,
          "processes that send fan-out copies over UDP, each from its own port "
          "(default 0: the sidecar sends them)", "N"),
    Spec("delivery_port", _port_or_zero,
          f"UDP port of delivery worker 0, worker i uses PORT+i (default "
          f"{DEFAULT_DELIVERY_PORT}; 0: ephemeral)", "PORT"),
    Spec("max_body", _max_body,
          f"largest MESSAGE body in bytes, larger ones get 413 (default {DEFAULT_MAX_BODY}; "
          "0: any)", "BYTES"),
    Spec("sender_rate", _rate,
          f"chat texts per second per sender (default {DEFAULT_SENDER_RATE:g}; 0: no limit)",
          "N"),
    Spec("sender_burst", _sender_burst,
          f"chat texts one sender may send at once (default {DEFAULT_SENDER_BURST})", "N"),
    Spec("max_members_per_room", _count_limit,
          f"members of one room, invitees included (default {DEFAULT_MAX_MEMBERS_PER_ROOM}; "
          "0: no limit)", "N"),
    Spec("max_rooms_per_user", _count_limit,
          f"rooms one user may be in or invited to (default {DEFAULT_MAX_ROOMS_PER_USER}; "
          "0: no limit)", "N"),
    Spec("max_rooms", _count_limit,
          f"rooms on this server (default {DEFAULT_MAX_ROOMS}; 0: no limit)", "N"),
    Spec("history", _flag, "record usage history for analysts (default 1)", "0|1"),
    Spec("history_db_url", _history_db_url,
          "database of the usage history (default: the same as db_url)", "URL"),
    Spec("history_flush_interval", _seconds(0.01, 60.0),
          f"seconds between batches of history rows (default {DEFAULT_HISTORY_FLUSH:g})",
          "SECONDS"),
    Spec("history_queue", _history_queue,
          f"history rows held for the writer; more are dropped and counted (default "
          f"{DEFAULT_HISTORY_QUEUE})", "N"),
    Spec("history_bodies", _flag, "store chat bodies in the history (default 0)", "0|1"),
    Spec("history_retention_days", _retention,
          "prune history older than this many days (default 0: keep all)", "DAYS"),
)
ADDRESS_LISTS = ("sip_listen", "trusted_sources", "rpc_http", "rpc_dgram", "rpc_binrpc")
NAMES = tuple(spec.name for spec in SPECS)


