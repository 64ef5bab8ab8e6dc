"""The settings themselves: every setting's name, type, default and meaning, and the
address types.  How a value is read is values.py's job; where it comes from, sources.py's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from typing import Any

from imc_sidecar.store.urls import redact

__all__ = [
    "DEFAULT_DB_URL",
    "DEFAULT_SIP_PORT",
    "DEFAULT_TRUSTED",
    "Listen",
    "Network",
    "RpcAddress",
    "Settings",
    "SettingsError",
    "is_loopback_host",
]

DEFAULT_DB_URL = "sqlite:///imc-sidecar.sqlite"  # relative: ./imc-sidecar.sqlite
DEFAULT_SIP_PORT = 5090  # not 5060, so a Kamailio on the same host keeps its port
DEFAULT_RPC_HTTP_PORT = 5092
DEFAULT_RPC_DGRAM_PORT = 5093
DEFAULT_RPC_BINRPC_PORT = 5094
MIN_TOKEN_LENGTH = 16
MAX_HASH_SIZE = 20  # 2^20 buckets is already far more than any room count needs
DEFAULT_MAX_PENDING = 5_000
MAX_DELIVERY_WORKERS = 64
DEFAULT_DELIVERY_PORT = 5100  # 5100-5107 in kamailio-snippets/sidecar-front.cfg
# bytes: above the ~32 KB text Kamailio's imc itself handles (longer ones it answers
# 500 "command error", as the engine does), so no Kamailio user meets this limit
DEFAULT_MAX_BODY = 65_536
# Texts per second per sender: far above any person or ordinary bot, so that load tests
# from one identity (bench/ sends each room's messages from one member, up to ~500/s
# here) are not refused, yet a runaway sender is held to it.
DEFAULT_SENDER_RATE = 1000.0
DEFAULT_SENDER_BURST = 5000
# Room limits: far above what people use (ejabberd ships 200 members per room and 100
# rooms per user) and above bench/'s largest shapes (250 members), so only a runaway
# client meets them; they bound one room's fan-out and the server's memory.
DEFAULT_MAX_MEMBERS_PER_ROOM = 1000
DEFAULT_MAX_ROOMS_PER_USER = 1000
DEFAULT_MAX_ROOMS = 1_000_000
# SIP over TCP: room for far more peers than a deployment behind front proxies has
# (Kamailio's own tcp_max_connections is 2048), a source may hold a sixteenth of them (a
# NAT with many phones), idle as Kamailio's tcp_connection_lifetime, and 1 MiB unsent
# beyond what the kernel's socket buffer (megabytes) already holds for a slow peer.
DEFAULT_SIP_TCP_MAX_CONNECTIONS = 4096
DEFAULT_SIP_TCP_MAX_PER_SOURCE = 256
DEFAULT_SIP_TCP_IDLE_TIMEOUT = 120.0
DEFAULT_SIP_TCP_MAX_BUFFER = 1024 * 1024
# Seconds: long enough for a busy database, short enough that a silent one fails a
# command while its sender still waits (a SIP client retransmits for 32 s).
DEFAULT_DB_CONNECT_TIMEOUT = 5.0
DEFAULT_DB_STATEMENT_TIMEOUT = 10.0
DEFAULT_FEED_INTERVAL = 0.5
DEFAULT_FEED_RETENTION = 3600.0
DEFAULT_HISTORY_FLUSH = 0.5  # seconds between batches of usage history
DEFAULT_HISTORY_QUEUE = 100_000  # history rows held while the database is slow or down
MAX_RETENTION_DAYS = 100 * 366
class SettingsError(Exception):
    """A setting that cannot be used; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Listen:
    """One SIP listening socket."""

    transport: str  # "udp" or "tcp"
    host: str  # IP address or host name; IPv6 without brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)


DEFAULT_LISTEN = (Listen("udp", "127.0.0.1", DEFAULT_SIP_PORT),
                  Listen("tcp", "127.0.0.1", DEFAULT_SIP_PORT))


@dataclass(frozen=True, slots=True)
class RpcAddress:
    """One admin RPC socket: `tcp:HOST:PORT`, `udp:HOST:PORT` or `unix:/path`."""

    kind: str  # "tcp", "udp" or "unix"
    host: str = ""  # IP address or host name; IPv6 without brackets
    port: int = 0
    path: str = ""  # unix only

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.kind}:{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return self.kind == "unix" or is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """Whether a listen host is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_TRUSTED = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

DEFAULT_RPC_HTTP = (RpcAddress("tcp", "127.0.0.1", DEFAULT_RPC_HTTP_PORT),)
DEFAULT_RPC_DGRAM = (RpcAddress("udp", "127.0.0.1", DEFAULT_RPC_DGRAM_PORT),)
DEFAULT_RPC_BINRPC = (RpcAddress("tcp", "127.0.0.1", DEFAULT_RPC_BINRPC_PORT),)


@dataclass(frozen=True)
class Settings:
    db_url: str = DEFAULT_DB_URL
    """Database for rooms and members (Kamailio-style or SQLAlchemy URL)."""
    db_mode: int = 2
    """0: rooms live in memory only; 2: load at start, write every change through."""
    db_connect_timeout: float = DEFAULT_DB_CONNECT_TIMEOUT
    """Seconds to open a database connection (or wait for a free one) before giving up."""
    db_statement_timeout: float = DEFAULT_DB_STATEMENT_TIMEOUT
    """Seconds one write transaction may take; past it the database counts as not
    answering: changing commands are refused with a notice, chat goes on, and the
    sidecar reconnects by itself.  Loading every room may take ten times this."""
    feed_interval: float = DEFAULT_FEED_INTERVAL
    """Seconds between reads of the change feed: how stale memory of a room another
    sidecar changed may be (plus one read).  PostgreSQL's NOTIFY wakes it sooner."""
    feed_retention: float = DEFAULT_FEED_RETENTION
    """Seconds the change feed keeps a row; older rows are pruned."""
    rooms_table: str = "imc_rooms"
    members_table: str = "imc_members"
    hash_size: int = 4
    """Exponent: the room table has 2^hash_size buckets (affects listing order)."""
    imc_cmd_start_char: str = "#"
    """A body starting with its first character is a command; the whole string is
    echoed in some notices, as Kamailio does."""
    outbound_proxy: str | None = None
    """SIP URI of the next hop for every MESSAGE the server sends; None: direct."""
    extra_hdrs: str = ""
    """Header lines added to every MESSAGE sent, each ending in CRLF."""
    create_on_join: bool = True
    """`#join` of a missing room creates it (else: "Room not found")."""
    check_on_create: bool = False
    """`#create` of an existing room always answers "Room already exists"."""
    sip_listen: tuple[Listen, ...] = DEFAULT_LISTEN
    trusted_sources: tuple[Network, ...] = DEFAULT_TRUSTED
    """Source addresses allowed to send SIP (the front proxies; the members too when
    there is no outbound_proxy): others get 403, their responses are ignored.  Required
    when a sip_listen address is not loopback."""
    sip_tcp_max_connections: int = DEFAULT_SIP_TCP_MAX_CONNECTIONS
    """SIP TCP connections peers may hold open at once; one more is closed at once.
    Connections the sidecar opens (to an outbound proxy) are not counted.  0: no limit."""
    sip_tcp_max_per_source: int = DEFAULT_SIP_TCP_MAX_PER_SOURCE
    """SIP TCP connections one source address may hold open; one more is closed at once.
    0: no limit."""
    sip_tcp_idle_timeout: float = DEFAULT_SIP_TCP_IDLE_TIMEOUT
    """Seconds a SIP TCP connection may go without a complete message or keep-alive
    received, or data sent, before it is closed (a message dribbled slower is cut off)."""
    sip_tcp_max_buffer: int = DEFAULT_SIP_TCP_MAX_BUFFER
    """Bytes a SIP TCP peer may leave unread on our side; past it the connection is
    closed and the MESSAGEs sent over it fail at once."""
    log_level: str = "info"
    rpc_http: tuple[RpcAddress, ...] = DEFAULT_RPC_HTTP
    """JSON-RPC over HTTP (POST /RPC): HOST:PORT or unix:/path; empty: off."""
    rpc_dgram: tuple[RpcAddress, ...] = DEFAULT_RPC_DGRAM
    """JSON-RPC datagrams (kamcli): udp:HOST:PORT and/or unix:/path; empty: off."""
    rpc_binrpc: tuple[RpcAddress, ...] = DEFAULT_RPC_BINRPC
    """BINRPC (kamcmd): tcp:HOST:PORT and/or unix:/path; empty: off."""
    rpc_fifo: str | None = None
    """JSON-RPC FIFO (kamctl) path; None: off."""
    rpc_fifo_reply_dir: str = "/tmp"
    """Where FIFO clients create their reply FIFOs (kamctl uses /tmp)."""
    rpc_token: str | None = None
    """Bearer token the HTTP transport requires; mandatory off loopback."""
    event_loop: str = "auto"
    """asyncio event loop: `uvloop`, `asyncio` (the standard one) or `auto` (uvloop when
    it is installed)."""
    max_pending_deliveries: int = DEFAULT_MAX_PENDING
    """Overload limit: MESSAGEs sent and not yet answered above which new chat texts are
    refused with 503 and Retry-After (until the backlog is down to three quarters of
    it); commands are never refused.  0 turns the limit off."""
    delivery_workers: int = 0
    """Processes that send the copies of each fan-out over UDP and run their
    transactions, each from a UDP port of its own on the first UDP listen host; 0: the
    sidecar sends them itself."""
    delivery_port: int = DEFAULT_DELIVERY_PORT
    """UDP port of the first delivery worker; worker i sends from `delivery_port + i`
    (a front proxy recognises the sidecar's traffic by these ports).  0: ephemeral."""
    max_body: int = DEFAULT_MAX_BODY
    """The largest MESSAGE body taken, in bytes; a larger one is answered 413.  0: any
    (up to the SIP parser's 1 MiB)."""
    sender_rate: float = DEFAULT_SENDER_RATE
    """Chat texts per second one sender may send on average (0: no limit); past it, 503
    with Retry-After and one notice per burst.  Commands are not limited."""
    sender_burst: int = DEFAULT_SENDER_BURST
    """Chat texts one sender may send at once before `sender_rate` applies."""
    max_members_per_room: int = DEFAULT_MAX_MEMBERS_PER_ROOM
    """Members of one room, invitees included; adding one more is refused ("Room is
    full").  0: no limit."""
    max_rooms_per_user: int = DEFAULT_MAX_ROOMS_PER_USER
    """Rooms one user may belong to or be invited to; one more is refused.  0: no limit."""
    max_rooms: int = DEFAULT_MAX_ROOMS
    """Rooms on this server; creating one more is refused.  Rooms already in the
    database are all loaded, whatever their number.  0: no limit."""
    history: bool = True
    """Record usage history (command events, one row per chat message with its
    delivery results) in our own tables, written in batches off the hot path."""
    history_db_url: str | None = None
    """Database of the usage history; None: the same as `db_url`."""
    history_flush_interval: float = DEFAULT_HISTORY_FLUSH
    """Seconds between two batches of history rows.  A kill -9 loses the rows not yet
    written (see README, `history_flush_interval`), never rooms or members."""
    history_queue: int = DEFAULT_HISTORY_QUEUE
    """History rows held in memory for the writer; rows beyond it are dropped, counted
    (`imc:history_dropped`) and logged."""
    history_bodies: bool = False
    """Also store each chat message's body (text) in the history."""
    history_retention_days: int = 0
    """Prune history rows older than this many days, in small batches; 0 keeps all."""

    @property
    def history_url(self) -> str | None:
        """Where the usage history goes: `history_db_url`, else the rooms' database when
        there is one (db_mode 2); None: nowhere."""
        if self.history_db_url:
            return self.history_db_url
        return self.db_url if self.db_mode == 2 else None

    def describe(self) -> list[str]:
        """`name = value` lines for a start-up log, password hidden."""
        lines = []
        for f in fields(self):
            value: Any = getattr(self, f.name)
            if f.name in ("sip_listen", "trusted_sources", "rpc_http", "rpc_dgram",
                          "rpc_binrpc"):
                shown = ", ".join(str(item) for item in value) or "off"
            elif f.name == "rpc_token":
                shown = "(set)" if value else "None"
            else:
                secret = f.name in ("db_url", "history_db_url") and value is not None
                shown = repr(redact(value) if secret else value)
            lines.append(f"{f.name} = {shown}")
        return lines

    def __repr__(self) -> str:  # dataclass keeps this one: no password in logs
        return "Settings(" + "; ".join(self.describe()) + ")"
