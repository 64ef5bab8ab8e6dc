"""Statistics: names, order, live gauges, counter resets, command counting."""

from __future__ import annotations

from rpc_support import ROOMS, Context

from imc_sidecar.imc.changes import StoredRoom
from imc_sidecar.stats import COMMANDS, Statistics


def _value(stats: Statistics, name: str) -> int:
    stat = stats.find(name)
    assert stat is not None
    return stat.value


def test_names_sorted_in_group_imc() -> None:
    names = [(stat.group, stat.name) for stat in Context().stats]
    assert names == sorted(names)
    assert {group for group, _ in names} == {"imc"}
    assert {name for _, name in names} == {
        "active_rooms", "members", "received_messages", "chat_messages", "sent_messages",
        "failed_deliveries", "refused_messages", "pending_deliveries", "delivery_workers",
        "delivery_worker_restarts", "history_queued", "history_written", "history_dropped",
        "history_errors", "untrusted_requests", "untrusted_responses", "oversized_messages",
        "rate_limited_messages", "room_full_refusals", "user_rooms_refusals",
        "rooms_limit_refusals", "tcp_connections", "tcp_refused_connections",
        "tcp_idle_closed", "tcp_overflow_closed", "tcp_framing_closed",
        "db_reachable", "db_outages", "db_refused_commands",
        "version_conflicts", "feed_refreshed_rooms",
        *(f"cmd_{command}" for command in COMMANDS),
    }


def test_gauges_follow_the_current_engine() -> None:
    context = Context(ROOMS)
    stats = context.stats
    assert _value(stats, "active_rooms") == 3
    assert _value(stats, "members") == 5  # invited included
    context.engine = Context([ROOMS[0]]).engine  # as after a reload
    assert _value(stats, "active_rooms") == 1
    assert _value(stats, "members") == 3


def test_reset_zeroes_counters_not_gauges() -> None:
    stats = Context(ROOMS).stats
    stats.received_messages = 7
    stats.commands["join"] = 2
    for stat in stats:
        stats.reset(stat)
    assert stats.received_messages == 0
    assert stats.commands["join"] == 0
    assert _value(stats, "active_rooms") == 3


def test_count_command_and_chat() -> None:
    stats = Statistics(lambda: Context().engine)
    stats.count_command("create", 1)
    stats.count_command("create", -30)  # a refused command still counts
    stats.count_command(None, 1)  # an accepted chat text
    stats.count_command(None, -200)  # a refused chat text does not
    stats.count_command("invite-failed", 1)  # internal, not a command
    assert stats.commands["create"] == 2
    assert stats.chat_messages == 1
    assert _value(stats, "cmd_create") == 2
    assert _value(stats, "chat_messages") == 1


def test_find_by_bare_name_only() -> None:
    stats = Context().stats
    assert stats.find("imc:active_rooms") is None
    assert stats.find("nonexistent") is None
    assert [stat.name for stat in stats.group("imc")] == [stat.name for stat in stats]
    assert stats.group("core") == []


def test_empty_room_counts() -> None:
    context = Context([StoredRoom("empty", "example.com", 0, ())])
    assert _value(context.stats, "active_rooms") == 1
    assert _value(context.stats, "members") == 0
