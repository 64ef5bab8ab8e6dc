"""Statistics in Kamailio's model: named values in groups, shown as `group:name`.

All of ours are in the group `imc`, the group Kamailio's imc module registers.  Two
kinds exist, as in Kamailio's counters:

* counters, bumped on the hot path as plain attribute adds and zeroed by
  `stats.reset_statistics`;
* gauges, computed live from the current engine when read (Kamailio's STAT_IS_FUNC);
  a reset does not touch them.

`imc:active_rooms` is the real number of rooms.  Kamailio registers the same name but
never updates it, so there it always reads 0: a deliberate difference.

Beside Kamailio's model, for Prometheus (`metrics.py`): `total()` reads a counter as if
it had never been reset, and two histograms time what counters cannot show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .histogram import Histogram
from .policy.connections import ConnectionCounts

if TYPE_CHECKING:
    from .history.writer import HistoryWriter
    from .imc.engine import ImcEngine
    from .policy.database import DatabaseHealth

__all__ = ["COMMANDS", "DB_WRITE_BUCKETS", "FANOUT_BUCKETS", "GROUP", "Stat", "Statistics"]

GROUP = "imc"
# The counter each kind of limit refusal is counted in (policy/requests.py, imc/limits.py).
LIMIT_COUNTERS = {
    "size": "oversized_messages",
    "rate": "rate_limited_messages",
    "room_members": "room_full_refusals",
    "user_rooms": "user_rooms_refusals",
    "rooms": "rooms_limit_refusals",
    "database": "db_refused_commands",
}
# What the SIP TCP limits did (sip/transport.py): each statistic and the
# ConnectionCounts field it reads.
TCP_COUNTERS = {
    "tcp_refused_connections": "refused",
    "tcp_idle_closed": "idle_closed",
    "tcp_overflow_closed": "overflow_closed",
    "tcp_framing_closed": "framing_closed",
}
# Every canonical command the engine reports in Outcome.command (aliases folded).
COMMANDS = (
    "accept", "add", "create", "destroy", "help", "invite", "join", "leave", "members",
    "modify", "reject", "remove", "rooms", "unknown",
)
# Seconds from accepting a chat text to the final answer of its last copy: a LAN member
# answers in milliseconds; a copy nobody answers ends at Timer F (32 s), so the top two
# buckets tell slow members from lost ones.
FANOUT_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
# Seconds of one committed write transaction: a local fsync is about a millisecond; the
# default db_statement_timeout (10 s) caps the rest.
DB_WRITE_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


@dataclass(frozen=True, slots=True)
class Stat:
    group: str
    name: str
    read: Callable[[], int]
    reset: Callable[[], None] | None  # None: a gauge, computed live, never reset

    @property
    def value(self) -> int:
        return self.read()


class Statistics:
    """The sidecar's statistics; the hot-path counters are public int attributes."""

    def __init__(
        self,
        engine: Callable[[], ImcEngine],
        pending: Callable[[], int] = lambda: 0,
        delivery_workers: Callable[[], int] = lambda: 0,
        history: Callable[[], HistoryWriter | None] = lambda: None,
        untrusted: Callable[[], tuple[int, int]] = lambda: (0, 0),
        tcp: ConnectionCounts | None = None,
        database: Callable[[], DatabaseHealth | None] = lambda: None,
        feed_refreshed: Callable[[], int] = lambda: 0,
    ) -> None:
        self._engine = engine  # a getter: the engine is replaced after a reload
        self._pending = pending
        self._history = history
        self.received_messages = 0  # MESSAGE requests handed to the chat engine
        self.chat_messages = 0  # chat texts accepted for fan-out
        self.sent_messages = 0  # MESSAGEs sent: chat copies and notices, one per recipient
        self.failed_deliveries = 0  # sent MESSAGEs answered >= 300, or timed out
        self.refused_messages = 0  # chat texts refused with 503 while overloaded
        self.oversized_messages = 0  # MESSAGEs refused 413: body over max_body
        self.rate_limited_messages = 0  # chat texts refused 503: sender over sender_rate
        self.room_full_refusals = 0  # commands refused: max_members_per_room reached
        self.user_rooms_refusals = 0  # commands refused: max_rooms_per_user reached
        self.rooms_limit_refusals = 0  # commands refused: max_rooms reached
        self.db_refused_commands = 0  # changing commands refused: the database is down
        self.delivery_worker_restarts = 0  # delivery workers started again after dying
        self.version_conflicts = 0  # writes that found their room changed by another sidecar
        self.commands: dict[str, int] = dict.fromkeys(COMMANDS, 0)
        # Observed once per finished fan-out (history/recorder.py) and once per committed
        # write (store/repository.py); a reset leaves them alone.
        self.fanout_seconds = Histogram(FANOUT_BUCKETS)
        self.db_write_seconds = Histogram(DB_WRITE_BUCKETS)
        # What each counter had counted when it was last reset, added up: `total()`.
        self._carried: dict[str, int] = {}
        stats = [
            Stat(GROUP, "active_rooms", self._rooms, None),
            Stat(GROUP, "members", self._members, None),
            Stat(GROUP, "pending_deliveries", self._pending, None),
            Stat(GROUP, "delivery_workers", delivery_workers, None),  # running now
            self._counter("delivery_worker_restarts"),
            self._counter("received_messages"),
            self._counter("chat_messages"),
            self._counter("sent_messages"),
            self._counter("failed_deliveries"),
            self._counter("refused_messages"),
            *(self._counter(name) for name in LIMIT_COUNTERS.values()),
            *(self._command(name) for name in COMMANDS),
            Stat(GROUP, "history_queued", self._history_queued, None),
            # Counted where they happen (the endpoint, the workers), read live here.
            self._live_counter("untrusted_requests", lambda: untrusted()[0]),
            self._live_counter("untrusted_responses", lambda: untrusted()[1]),
            *self._tcp_stats(tcp or ConnectionCounts()),
            *(self._history_counter(name) for name in ("written", "dropped", "errors")),
            # 1 while the rooms' database answers (or there is none: db_mode 0), else 0.
            Stat(GROUP, "db_reachable", lambda: _reachable(database()), None),
            self._live_counter("db_outages", lambda: _outages(database())),
            self._counter("version_conflicts"),
            # Rooms re-read because another sidecar changed them (the change feed).
            self._live_counter("feed_refreshed_rooms", feed_refreshed),
        ]
        # Kamailio lists groups, and the names in a group, in byte order.
        stats.sort(key=lambda stat: (stat.group, stat.name))
        self._stats = tuple(stats)
        self._by_name = {stat.name: stat for stat in stats}

    # -- hot path ----------------------------------------------------------------------

    def count_command(self, command: str | None, rc: int) -> None:
        """Count one engine outcome: a command by name, or an accepted chat text."""
        if command is None:
            if rc == 1:
                self.chat_messages += 1
        elif command in self.commands:
            self.commands[command] += 1

    def count_limited(self, limit: str) -> None:
        """Count one request refused by a limit, by its kind (`LIMIT_COUNTERS`)."""
        name = LIMIT_COUNTERS[limit]
        setattr(self, name, getattr(self, name) + 1)

    # -- lookups (Kamailio's semantics) ------------------------------------------------

    def __iter__(self) -> Iterator[Stat]:
        return iter(self._stats)

    def group(self, group: str) -> list[Stat]:
        return [stat for stat in self._stats if stat.group == group]

    def find(self, name: str) -> Stat | None:
        """A statistic by its bare name, whatever its group (Kamailio's get_stat())."""
        return self._by_name.get(name)

    def reset(self, stat: Stat) -> None:
        if stat.reset is not None:
            self._carried[stat.name] = self.total(stat)
            stat.reset()

    def total(self, stat: Stat) -> int:
        """`stat` as if never reset: a counter only grows, as Prometheus expects."""
        return stat.read() + self._carried.get(stat.name, 0)

    # -- definitions -------------------------------------------------------------------

    def _rooms(self) -> int:
        return sum(1 for _ in self._engine().rooms())

    def _members(self) -> int:
        return sum(len(room.members) for room in self._engine().rooms())

    def _counter(self, attribute: str) -> Stat:
        def read() -> int:
            value: int = getattr(self, attribute)
            return value

        def reset() -> None:
            setattr(self, attribute, 0)

        return Stat(GROUP, attribute, read, reset)

    def _live_counter(self, name: str, total: Callable[[], int]) -> Stat:
        """A counter kept elsewhere as a running total: a reset remembers the total."""
        base = [0]

        def read() -> int:
            return total() - base[0]

        def reset() -> None:
            base[0] = total()

        return Stat(GROUP, name, read, reset)

    def _tcp_stats(self, counts: ConnectionCounts) -> list[Stat]:
        def field(name: str) -> Callable[[], int]:
            return lambda: int(getattr(counts, name))

        return [
            Stat(GROUP, "tcp_connections", field("open"), None),
            *(self._live_counter(stat, field(name)) for stat, name in TCP_COUNTERS.items()),
        ]

    def _history_queued(self) -> int:
        writer = self._history()
        return 0 if writer is None else writer.queued

    def _history_counter(self, name: str) -> Stat:
        def read() -> int:
            writer = self._history()
            return 0 if writer is None else int(getattr(writer.counters, name))

        def reset() -> None:
            writer = self._history()
            if writer is not None:
                setattr(writer.counters, name, 0)

        return Stat(GROUP, f"history_{name}", read, reset)

    def _command(self, command: str) -> Stat:
        def read() -> int:
            return self.commands[command]

        def reset() -> None:
            self.commands[command] = 0

        return Stat(GROUP, f"cmd_{command}", read, reset)


def _reachable(health: DatabaseHealth | None) -> int:
    return 1 if health is None or health.reachable else 0


def _outages(health: DatabaseHealth | None) -> int:
    return 0 if health is None else health.outages
