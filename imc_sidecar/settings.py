"""Settings: every modparam of Kamailio's imc module, plus where to listen and log.

Names, meanings and defaults are Kamailio's (imc.c `params[]`), except:

* `db_url` defaults to a SQLite file, `imc-sidecar.sqlite` in the working directory,
  instead of Kamailio's `mysql://kamailio:kamailiorw@localhost/kamailio`.
* `db_mode` defaults to 2 (write-through).  Kamailio master defaults to 0 and loses
  every room at a restart; 5.6 has no db_mode at all.  Only 0 and 2 exist here.

Sources, each overriding the one before: defaults, a TOML file (`--config FILE` or
`IMC_CONFIG`; top-level keys named like the settings), `IMC_<NAME>` environment
variables, and `--<name-with-dashes>` command-line flags.  A bad value stops start-up
with one line naming the setting and where the value came from.

Admin RPC (see README "Admin RPC"): every transport listens on loopback by default, on
ports next to the SIP default so that a Kamailio on the same host (5060, its RPC on unix
sockets and FIFOs) never collides: JSON-RPC over HTTP `127.0.0.1:5092` (`/RPC`),
JSON-RPC datagrams `udp:127.0.0.1:5093`, BINRPC `tcp:127.0.0.1:5094`.  Unix sockets and
the FIFO are opt-in, by explicit path.  An empty value (or `off`) disables a transport.
An HTTP address that is not loopback must be given explicitly and needs `rpc_token`
(clients send `Authorization: Bearer <token>`); start-up refuses it otherwise.

`extra_hdrs` is a block of `Name: value` header lines.  Since a flag or a variable
cannot easily hold a line break, the two-character escapes `\\r\\n` and `\\n` mark one
(and `\\\\` is a backslash); real line breaks work too.  Each line ends up with CRLF.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from imc_sidecar.imc.headers import validate_extra_hdrs
from imc_sidecar.sip.uri import UriError, parse_uri
from imc_sidecar.store.urls import redact, to_async_url

__all__ = [
    "DEFAULT_DB_URL",
    "DEFAULT_SIP_PORT",
    "Listen",
    "RpcAddress",
    "Settings",
    "SettingsError",
    "add_arguments",
    "load_settings",
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
DEFAULT_HISTORY_FLUSH = 0.5  # seconds between batches of usage history
DEFAULT_HISTORY_QUEUE = 100_000  # history rows held while the database is slow or down
MAX_RETENTION_DAYS = 100 * 366
_EVENT_LOOPS = ("auto", "uvloop", "asyncio")
_TRANSPORTS = ("udp", "tcp")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TABLE_RE = re.compile(r"[a-z_][a-z0-9_]{0,31}")  # version.table_name is VARCHAR(32)
_HOSTNAME_RE = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9\-.]+")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


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
        if self.kind == "unix":
            return True
        if self.host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


DEFAULT_RPC_HTTP = (RpcAddress("tcp", "127.0.0.1", DEFAULT_RPC_HTTP_PORT),)
DEFAULT_RPC_DGRAM = (RpcAddress("udp", "127.0.0.1", DEFAULT_RPC_DGRAM_PORT),)
DEFAULT_RPC_BINRPC = (RpcAddress("tcp", "127.0.0.1", DEFAULT_RPC_BINRPC_PORT),)


@dataclass(frozen=True)
class Settings:
    db_url: str = DEFAULT_DB_URL
    """Database for rooms and members (Kamailio-style or SQLAlchemy URL)."""
    db_mode: int = 2
    """0: rooms live in memory only; 2: load at start, write every change through."""
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
            if f.name in ("sip_listen", "rpc_http", "rpc_dgram", "rpc_binrpc"):
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


class _Bad(Exception):
    """Raised by a parser: says what the value must be."""


# --- parsers: raw value (text from env/CLI, or a TOML value) -> typed value ---------


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise _Bad("must be a string")
    return raw


def _integer(raw: object, low: int, high: int, what: str) -> int:
    if isinstance(raw, bool):
        raise _Bad(what)
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):
        value = int(raw)
    else:
        raise _Bad(what)
    if not low <= value <= high:
        raise _Bad(what)
    return value


def _db_url(raw: object) -> str:
    text = _text(raw).strip()
    try:
        to_async_url(text)
    except ValueError as exc:
        raise _Bad(str(exc)) from None
    return text


def _db_mode(raw: object) -> int:
    what = "must be 0 (memory only) or 2 (write-through)"
    value = _integer(raw, 0, 2, what)
    if value == 1:
        raise _Bad(what)
    return value


def _table(raw: object) -> str:
    text = _text(raw).strip()
    if not _TABLE_RE.fullmatch(text) or text == "version":
        raise _Bad("must be a lower-case SQL table name of at most 32 characters "
                   "(a-z, 0-9, _), other than 'version'")
    return text


def _hash_size(raw: object) -> int:
    return _integer(raw, 1, MAX_HASH_SIZE, f"must be an integer between 1 and {MAX_HASH_SIZE}")


def _start_char(raw: object) -> str:
    text = _text(raw)
    if not text or any(c.isspace() or not c.isprintable() for c in text):
        raise _Bad("must be a non-empty string without spaces or control characters")
    return text


def _outbound_proxy(raw: object) -> str | None:
    text = _text(raw).strip()
    if not text:
        return None
    try:
        uri = parse_uri(text)
    except UriError as exc:
        raise _Bad(f"must be a SIP URI such as sip:127.0.0.1:5060 ({exc})") from None
    if uri.scheme != "sip":
        raise _Bad("must be a sip: URI (TLS is not supported)")
    if uri.transport not in (None, *_TRANSPORTS):
        raise _Bad("transport must be udp or tcp")
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
        raise _Bad(str(exc)) from None


def _flag(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
    raise _Bad("must be 0 or 1 (or true/false)")


def _sip_listen(raw: object) -> tuple[Listen, ...]:
    items: list[str] = []
    parts = raw if isinstance(raw, list) else [raw]
    for part in parts:
        items.extend(item.strip() for item in _text(part).split(",") if item.strip())
    if not items:
        raise _Bad("needs at least one address such as udp:127.0.0.1:5090")
    found: list[Listen] = []
    for item in items:
        for listen in _listen(item):
            if listen in found:
                raise _Bad(f"{listen} is listed twice")
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
            raise _Bad(what)
        port_text = tail[1:]
    elif item.count(":") > 1:
        host, port_text = item, ""  # bare IPv6 address, no port
    else:
        host, _, port_text = item.partition(":")
    if not _valid_host(host):
        raise _Bad(what)
    port = DEFAULT_SIP_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise _Bad(what)
        port = int(port_text)
    return [Listen(t, host, port) for t in transports]


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
                raise _Bad(f"{address} is listed twice")
            found.append(address)
        return tuple(found)

    return parse


def _rpc_address(item: str, kinds: tuple[str, ...], port: int, example: str) -> RpcAddress:
    head, colon, rest = item.partition(":")
    if colon and head.lower() == "unix":
        if not rest or "\x00" in rest:
            raise _Bad(f"'{item}' needs a socket path, e.g. {example}")
        return RpcAddress("unix", path=rest)
    kind = kinds[0]
    if colon and head.lower() in ("tcp", "udp"):
        if head.lower() not in kinds:
            raise _Bad(f"'{item}': {head.lower()} is not possible here; use {example}")
        kind, item = head.lower(), rest
    try:
        (listen,) = _listen(f"udp:{item}")
    except _Bad:
        raise _Bad(f"'{item}' must look like {example}") from None
    # A port was given unless this is "[v6]" or a bare IPv6 address (several colons).
    tail = item.rpartition("]")[2] if item.startswith("[") else item
    explicit = tail.count(":") == 1
    return RpcAddress(kind, listen.host, listen.port if explicit else port)


def _fifo(raw: object) -> str | None:
    text = _text(raw).strip()
    if text.lower() in ("", "off"):
        return None
    if "\x00" in text:
        raise _Bad("must be a file path")
    return text


def _reply_dir(raw: object) -> str:
    text = _text(raw).strip()
    if not text or "\x00" in text:
        raise _Bad("must be a directory path")
    return text


def _token(raw: object) -> str | None:
    text = _text(raw).strip()
    if not text:
        return None
    if len(text) < MIN_TOKEN_LENGTH or not text.isascii() or not text.isprintable() or (
        " " in text
    ):
        raise _Bad(f"must be at least {MIN_TOKEN_LENGTH} printable ASCII characters, "
                   "no spaces")
    return text


def _event_loop(raw: object) -> str:
    text = _text(raw).strip().lower()
    if text not in _EVENT_LOOPS:
        raise _Bad(f"must be one of {', '.join(_EVENT_LOOPS)}")
    if text == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise _Bad("uvloop is not installed (pip install uvloop, or use auto/asyncio)")
    return text


def _max_pending(raw: object) -> int:
    return _integer(raw, 0, 10_000_000, "must be an integer from 0 (no limit) to 10000000")


def _delivery_workers(raw: object) -> int:
    return _integer(raw, 0, MAX_DELIVERY_WORKERS,
                    f"must be an integer from 0 (none) to {MAX_DELIVERY_WORKERS}")


def _port_or_zero(raw: object) -> int:
    return _integer(raw, 0, 65535, "must be a port number (1-65535) or 0 (ephemeral)")


def _history_db_url(raw: object) -> str | None:
    text = _text(raw).strip()
    return _db_url(text) if text else None


def _seconds(low: float, high: float) -> Callable[[object], float]:
    def parse(raw: object) -> float:
        what = f"must be a number of seconds from {low:g} to {high:g}"
        if isinstance(raw, bool):
            raise _Bad(what)
        if isinstance(raw, int | float):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = float(raw)
            except ValueError:
                raise _Bad(what) from None
        else:
            raise _Bad(what)
        if not low <= value <= high:  # also refuses nan
            raise _Bad(what)
        return value

    return parse


def _history_queue(raw: object) -> int:
    return _integer(raw, 100, 100_000_000, "must be an integer from 100 to 100000000")


def _retention(raw: object) -> int:
    return _integer(raw, 0, MAX_RETENTION_DAYS,
                    f"must be a number of days from 0 (keep all) to {MAX_RETENTION_DAYS}")


def _log_level(raw: object) -> str:
    text = _text(raw).strip().lower()
    if text not in _LOG_LEVELS:
        raise _Bad(f"must be one of {', '.join(_LOG_LEVELS)}")
    return text


@dataclass(frozen=True)
class _Spec:
    name: str
    parse: Callable[[object], Any]
    help: str
    metavar: str


_SPECS = (
    _Spec("db_url", _db_url, f"database URL (default {DEFAULT_DB_URL})", "URL"),
    _Spec("db_mode", _db_mode, "0 = memory only, 2 = write-through (default 2)", "0|2"),
    _Spec("rooms_table", _table, "rooms table (default imc_rooms)", "NAME"),
    _Spec("members_table", _table, "members table (default imc_members)", "NAME"),
    _Spec("hash_size", _hash_size, "room table has 2^N buckets (default 4)", "N"),
    _Spec("imc_cmd_start_char", _start_char, "command prefix (default #)", "CHAR"),
    _Spec("outbound_proxy", _outbound_proxy, "next hop for sent MESSAGEs (SIP URI)", "URI"),
    _Spec("extra_hdrs", _extra_hdrs, r"headers for sent MESSAGEs, lines split by \r\n",
          "HEADERS"),
    _Spec("create_on_join", _flag, "#join creates a missing room (default 1)", "0|1"),
    _Spec("check_on_create", _flag, "#create of an existing room fails (default 0)", "0|1"),
    _Spec("sip_listen", _sip_listen,
          f"SIP socket(s), e.g. udp:127.0.0.1:{DEFAULT_SIP_PORT}; repeat or comma-separate",
          "ADDR"),
    _Spec("log_level", _log_level, "debug, info, warning, error or critical (default info)",
          "LEVEL"),
    _Spec("rpc_http", _rpc_addresses(("tcp",), DEFAULT_RPC_HTTP_PORT),
          f"JSON-RPC over HTTP, HOST:PORT or unix:PATH (default 127.0.0.1:"
          f"{DEFAULT_RPC_HTTP_PORT}; 'off' disables)", "ADDR"),
    _Spec("rpc_dgram", _rpc_addresses(("udp",), DEFAULT_RPC_DGRAM_PORT),
          f"JSON-RPC datagrams, udp:HOST:PORT or unix:PATH (default udp:127.0.0.1:"
          f"{DEFAULT_RPC_DGRAM_PORT}; 'off' disables)", "ADDR"),
    _Spec("rpc_binrpc", _rpc_addresses(("tcp",), DEFAULT_RPC_BINRPC_PORT),
          f"BINRPC (kamcmd), tcp:HOST:PORT or unix:PATH (default tcp:127.0.0.1:"
          f"{DEFAULT_RPC_BINRPC_PORT}; 'off' disables)", "ADDR"),
    _Spec("rpc_fifo", _fifo, "JSON-RPC FIFO path for kamctl (default: off)", "PATH"),
    _Spec("rpc_fifo_reply_dir", _reply_dir, "directory of FIFO reply files (default /tmp)",
          "DIR"),
    _Spec("rpc_token", _token,
          "bearer token for HTTP RPC; required off loopback (prefer IMC_RPC_TOKEN)", "TOKEN"),
    _Spec("event_loop", _event_loop, "auto (uvloop when installed), uvloop or asyncio",
          "LOOP"),
    _Spec("max_pending_deliveries", _max_pending,
          f"refuse chat texts (503) above this many unanswered MESSAGEs sent (default "
          f"{DEFAULT_MAX_PENDING}; 0: no limit)", "N"),
    _Spec("delivery_workers", _delivery_workers,
          "processes that send fan-out copies over UDP, each from its own port "
          "(default 0: the sidecar sends them)", "N"),
    _Spec("delivery_port", _port_or_zero,
          f"UDP port of delivery worker 0, worker i uses PORT+i (default "
          f"{DEFAULT_DELIVERY_PORT}; 0: ephemeral)", "PORT"),
    _Spec("history", _flag, "record usage history for analysts (default 1)", "0|1"),
    _Spec("history_db_url", _history_db_url,
          "database of the usage history (default: the same as db_url)", "URL"),
    _Spec("history_flush_interval", _seconds(0.01, 60.0),
          f"seconds between batches of history rows (default {DEFAULT_HISTORY_FLUSH:g})",
          "SECONDS"),
    _Spec("history_queue", _history_queue,
          f"history rows held for the writer; more are dropped and counted (default "
          f"{DEFAULT_HISTORY_QUEUE})", "N"),
    _Spec("history_bodies", _flag, "store chat bodies in the history (default 0)", "0|1"),
    _Spec("history_retention_days", _retention,
          "prune history older than this many days (default 0: keep all)", "DAYS"),
)
_ADDRESS_LISTS = ("sip_listen", "rpc_http", "rpc_dgram", "rpc_binrpc")
_NAMES = tuple(spec.name for spec in _SPECS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register `--config` and one `--<name>` flag per setting (default None: not given)."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML file with settings (or IMC_CONFIG)")
    for spec in _SPECS:
        flag = "--" + spec.name.replace("_", "-")
        if spec.name in _ADDRESS_LISTS:
            parser.add_argument(flag, dest=spec.name, action="append", default=None,
                                metavar=spec.metavar, help=spec.help)
        else:
            parser.add_argument(flag, dest=spec.name, default=None, metavar=spec.metavar,
                                help=spec.help)


def load_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    """Defaults, then the TOML file, then IMC_* variables, then flags; validated."""
    raw: dict[str, tuple[object, str]] = {}
    config = getattr(args, "config", None) or environ.get("IMC_CONFIG") or None
    if config:
        for name, value in _read_toml(config).items():
            raw[name] = (value, os.fspath(config))
    for name in _NAMES:
        variable = f"IMC_{name.upper()}"
        if variable in environ:
            raw[name] = (environ[variable], variable)
    for name in _NAMES:
        value = getattr(args, name, None)
        if value is not None:
            raw[name] = (value, "--" + name.replace("_", "-"))
    values: dict[str, Any] = {}
    for spec in _SPECS:
        if spec.name not in raw:
            continue
        value, source = raw[spec.name]
        try:
            values[spec.name] = spec.parse(value)
        except _Bad as exc:
            raise SettingsError(
                f"{spec.name}: {exc} (got {_shown(spec.name, value)} from {source})"
            ) from None
    settings = Settings(**values)
    if settings.rooms_table == settings.members_table:
        raise SettingsError(
            f"members_table: must differ from rooms_table (both '{settings.rooms_table}')"
        )
    _check_rpc(settings)
    return settings


def _check_rpc(settings: Settings) -> None:
    """HTTP off loopback needs a token; no two sockets may claim the same address."""
    for address in settings.rpc_http:
        if not address.loopback and settings.rpc_token is None:
            raise SettingsError(
                f"rpc_http: {address} is not a loopback address; set rpc_token "
                "(IMC_RPC_TOKEN) so that HTTP clients must send a bearer token"
            )
    seen: dict[str, str] = {}
    claims = [(str(listen), "sip_listen") for listen in settings.sip_listen]
    for name in ("rpc_http", "rpc_dgram", "rpc_binrpc"):
        claims.extend((str(address), name) for address in getattr(settings, name))
    if settings.rpc_fifo:
        claims.append((f"unix:{settings.rpc_fifo}", "rpc_fifo"))
    for where, name in claims:
        if where in seen:
            raise SettingsError(f"{name}: {where} is also used by {seen[where]}")
        seen[where] = name


def _read_toml(path: str) -> dict[str, object]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: not valid TOML ({exc})") from None
    for key in data:
        if key not in _NAMES:
            close = difflib.get_close_matches(key, _NAMES, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SettingsError(f"config file {path}: unknown setting '{key}'{hint}")
    return data


def _shown(name: str, value: object) -> str:
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if name in ("db_url", "history_db_url") and isinstance(value, str):
        value = redact(value)
    if name == "rpc_token":
        return "(hidden)"
    return repr(value)
