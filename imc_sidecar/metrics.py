"""What `GET /metrics` shows: each `imc:` statistic's Prometheus name, type and help.

Pure data and one pure function; `rpc/prometheus.py` turns the result into
prometheus_client's families at scrape time, so the hot path keeps its one copy of
every counter (the plain attributes of `Statistics`).

Names follow Prometheus' conventions: one prefix, `imc_sidecar_`; snake_case; counters
end in `_total`; units in the name (`_seconds`, `_rows`).  Statistics that are one
measure split by kind become one family with a label: the six limit refusals are
`imc_sidecar_limit_refusals_total{limit=…}`, the fourteen `cmd_*` are
`imc_sidecar_commands_total{command=…}`, the three TCP closes
`imc_sidecar_tcp_closed_connections_total{reason=…}`.

Resets: `stats.reset_statistics` zeroes Kamailio's counters, but a Prometheus counter
must only grow (a drop reads as a process restart, and `rate()` then loses the interval
before it).  So counters are exposed through `Statistics.total()`, which adds back what
each reset took away: kamcmd and kamctl see their counters restart from 0, Prometheus
sees one monotonic series per process lifetime.  Gauges are the same values as the RPC.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .stats import COMMANDS, LIMIT_COUNTERS

__all__ = [
    "DB_WRITE_SECONDS",
    "FANOUT_SECONDS",
    "PREFIX",
    "SERIES",
    "Family",
    "Series",
    "families",
]

PREFIX = "imc_sidecar_"

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class Family:
    name: str  # as exposed: a counter's with `_total`
    kind: Kind
    help: str
    label: str | None = None  # the one label of a family of several series


@dataclass(frozen=True, slots=True)
class Series:
    family: Family
    label_value: str | None = None


def _gauge(name: str, text: str) -> Series:
    return Series(Family(PREFIX + name, "gauge", text))


def _counter(name: str, text: str) -> Series:
    return Series(Family(f"{PREFIX}{name}_total", "counter", text))


_LIMITS = Family(
    PREFIX + "limit_refusals_total", "counter",
    "Requests refused by a limit: size (413, max_body), rate (sender_rate), "
    "room_members, user_rooms, rooms (the room limits), database (503 while the "
    "database does not answer).",
    "limit",
)
_COMMANDS = Family(
    PREFIX + "commands_total", "counter",
    "Commands run, refused ones included, aliases under their command.", "command",
)
_TCP_CLOSED = Family(
    PREFIX + "tcp_closed_connections_total", "counter",
    "SIP TCP connections closed by a limit: idle (sip_tcp_idle_timeout), overflow "
    "(sip_tcp_max_buffer), framing (a stream not cut into messages).",
    "reason",
)

# Every `imc:` statistic, by its bare name.
SERIES: dict[str, Series] = {
    "active_rooms": _gauge("active_rooms", "Rooms now."),
    "members": _gauge("members", "Member entries in all rooms now, invited ones included."),
    "pending_deliveries": _gauge(
        "pending_deliveries", "MESSAGEs sent and not answered yet (the overload measure)."),
    "delivery_workers": _gauge("delivery_workers", "Delivery workers taking copies now."),
    "history_queued": _gauge(
        "history_queued_rows", "Usage-history rows waiting for the background writer."),
    "tcp_connections": _gauge("tcp_connections", "SIP TCP connections open now."),
    "db_reachable": _gauge(
        "db_reachable", "1 while the rooms' database answers (and with db_mode 0), else 0."),
    "received_messages": _counter(
        "received_messages", "MESSAGE requests handed to the chat engine."),
    "chat_messages": _counter("chat_messages", "Chat texts accepted for fan-out."),
    "sent_messages": _counter(
        "sent_messages", "MESSAGEs sent: chat copies and notices, one per recipient."),
    "failed_deliveries": _counter(
        "failed_deliveries", "Sent MESSAGEs answered with a status >= 300, or timed out."),
    "refused_messages": _counter(
        "refused_messages", "Chat texts answered 503 because the sidecar was overloaded."),
    "delivery_worker_restarts": _counter(
        "delivery_worker_restarts", "Delivery workers started again after dying."),
    "history_written": _counter("history_written_rows", "Usage-history rows committed."),
    "history_dropped": _counter(
        "history_dropped_rows", "Usage-history rows dropped because the queue was full."),
    "history_errors": _counter(
        "history_write_errors", "Failed attempts to write a batch of usage history."),
    "untrusted_requests": _counter(
        "untrusted_requests", "Requests answered 403: source not in trusted_sources."),
    "untrusted_responses": _counter(
        "untrusted_responses", "Responses ignored: source not in trusted_sources."),
    "db_outages": _counter("db_outages", "Times the rooms' database went from answering to not."),
    "tcp_refused_connections": _counter(
        "tcp_refused_connections", "SIP TCP connections closed as soon as accepted (limits)."),
    "version_conflicts": _counter(
        "version_conflicts", "Writes that found their room changed by another sidecar."),
    "feed_refreshed_rooms": _counter(
        "feed_refreshed_rooms", "Rooms re-read because another sidecar changed them."),
    **{stat: Series(_LIMITS, limit) for limit, stat in LIMIT_COUNTERS.items()},
    **{f"cmd_{command}": Series(_COMMANDS, command) for command in COMMANDS},
    **{f"tcp_{reason}_closed": Series(_TCP_CLOSED, reason)
       for reason in ("idle", "overflow", "framing")},
}

FANOUT_SECONDS = Family(
    PREFIX + "fanout_seconds", "histogram",
    "Seconds from accepting a chat text to the final answer of its last copy (usage "
    "history on).",
)
DB_WRITE_SECONDS = Family(
    PREFIX + "db_write_seconds", "histogram",
    "Seconds of each committed write transaction to the rooms' database.",
)


def families(
    values: Iterable[tuple[str, int]],
) -> list[tuple[Family, list[tuple[str | None, int]]]]:
    """Group (statistic name, value) pairs into families, each with its (label value,
    value) samples, in the order first met; a name not in `SERIES` is left out."""
    grouped: dict[Family, list[tuple[str | None, int]]] = {}
    for name, value in values:
        series = SERIES.get(name)
        if series is not None:
            grouped.setdefault(series.family, []).append((series.label_value, value))
    return list(grouped.items())
