"""The admin methods' values and faults, as Kamailio 5.6.3 produces them (checked live)."""

from __future__ import annotations

import time

import pytest
from rpc_support import ROOMS, STARTED_AT, Context

from imc_sidecar.imc.changes import StoredRoom
from imc_sidecar.rpc.methods import build_registry, version_string
from imc_sidecar.rpc.registry import MethodNotFound, RpcFault, RpcReply, RpcStruct

REGISTRY = build_registry()


def _call(method: str, *params: object, context: Context | None = None) -> RpcReply:
    return REGISTRY.call(context or Context(ROOMS), method, params)


def _fault(method: str, *params: object) -> tuple[int, str]:
    with pytest.raises(RpcFault) as info:
        _call(method, *params)
    return info.value.code, info.value.message


# -- imc ------------------------------------------------------------------------------


def test_list_rooms_in_kamailio_order() -> None:
    reply = _call("imc.list_rooms")
    assert reply.array
    assert reply.values == [
        {"room": "sip:chat-2@example.com", "members": 1, "owner": "sip:dave@example.com"},
        {"room": "sip:chat-1@example.com", "members": 3, "owner": "sip:alice@example.com"},
        {"room": "sip:lonely@example.com", "members": 1, "owner": "sip:erin@example.com"},
    ]
    assert all(list(value) == ["room", "members", "owner"] for value in reply.values)


def test_list_rooms_empty_and_memberless() -> None:
    assert _call("imc.list_rooms", context=Context()).values == []
    reply = _call("imc.list_rooms", context=Context([StoredRoom("e", "example.com", 0, ())]))
    assert reply.values == [{"room": "sip:e@example.com", "members": 0, "owner": ""}]


def test_list_members() -> None:
    reply = _call("imc.list_members", "sip:chat-1@example.com", "extra", 3)
    assert not reply.array
    (value,) = reply.values
    assert isinstance(value, RpcStruct) and value.one_call
    assert list(value.items()) == [
        ("room", "sip:chat-1@example.com"),
        # creator first, then newest first; invited carol is listed too
        ("members", ["sip:alice@example.com", "sip:carol@example.com", "sip:bob@example.com"]),
        ("count", 3),
    ]


@pytest.mark.parametrize("uri", [
    "sip:CHAT-1@EXAMPLE.COM", "sips:chat-1@example.com", "sip:chat-1@example.com:5060",
    "sip:chat-1@example.com;transport=udp",
])
def test_list_members_finds_the_room_as_kamailio_does(uri: str) -> None:
    value = _call("imc.list_members", uri).values[0]
    assert isinstance(value, dict) and value["room"] == "sip:chat-1@example.com"


@pytest.mark.parametrize(("params", "message"), [
    ((), "No room name"),
    ((123,), "No room name"),
    ((None,), "No room name"),
    ((True,), "No room name"),
    (({},), "No room name"),
    (("",), "Empty room name"),
    ((".x",), "Empty room name"),
    (("chat-1@example.com",), "Invalid room name"),
    (("  sip:chat-1@example.com",), "Invalid room name"),
    (("sip:chat-1@exam ple.com",), "Invalid room name"),
    (("sip:chat-1@example.comé",), "Invalid room name"),
    (("sip:nope@example.com",), "Room not found"),
    (("sip:example.com",), "Room not found"),
])
def test_list_members_faults(params: tuple[object, ...], message: str) -> None:
    assert _fault("imc.list_members", *params) == (500, message)


# -- stats ----------------------------------------------------------------------------


def test_get_statistics_forms() -> None:
    context = Context(ROOMS)
    context.stats.received_messages = 12
    lines = _call("stats.get_statistics", "imc:", context=context).values
    assert lines[0] == "imc:active_rooms = 3"
    assert "imc:received_messages = 12" in lines
    assert _call("stats.get_statistics", "all", context=context).values == lines
    assert _call("stats.get_statistics", "received_messages", context=context).values == [
        "imc:received_messages = 12"
    ]
    # a group:name form is not a bare name, an unknown name or group is silence
    assert _call("stats.get_statistics", "imc:active_rooms").values == []
    assert _call("stats.get_statistics", "nope", "core:").values == []
    # several names; scanning stops at the first parameter that is not a string
    assert _call("stats.get_statistics", "active_rooms", 5, "members").values == [
        "imc:active_rooms = 3"
    ]
    assert _call("stats.get_statistics", "nope").array  # Kamailio's RET_ARRAY


@pytest.mark.parametrize("method", ["stats.get_statistics", "stats.fetch", "stats.fetchn"])
@pytest.mark.parametrize("params", [(), (123,), (None,)])
def test_stats_need_a_name(method: str, params: tuple[object, ...]) -> None:
    assert _fault(method, *params) == (400, "Please provide which stats to retrieve")


@pytest.mark.parametrize("method", ["stats.reset_statistics", "stats.clear_statistics"])
def test_reset_needs_a_name(method: str) -> None:
    assert _fault(method) == (400, "Please provide stats name")


def test_fetch_forms() -> None:
    def fetch(*names: str) -> object:
        (value,) = _call("stats.fetch", *names).values
        return value

    one = {"imc.active_rooms": "3"}
    assert fetch("imc.active_rooms") == one
    assert fetch("imc:active_rooms") == one
    assert fetch("active_rooms") == one
    assert fetch("x.active_rooms") == {}
    assert fetch("nope") == {}
    assert list(fetch("imc:")) == [f"imc.{stat.name}" for stat in Context().stats]
    (numbers,) = _call("stats.fetchn", "active_rooms", "members").values
    assert numbers == {"imc.active_rooms": 3, "imc.members": 5}


def test_reset_and_clear() -> None:
    context = Context(ROOMS)
    context.stats.sent_messages = 4
    context.stats.received_messages = 2
    assert _call("stats.reset_statistics", "sent_messages", context=context).values == []
    assert context.stats.sent_messages == 0
    assert context.stats.received_messages == 2
    # clear prints every line, but a non-array method shows only the last
    reply = _call("stats.clear_statistics", "received_messages", "active_rooms",
                  context=context)
    assert reply.values == ["imc:received_messages = 0 (2)", "imc:active_rooms = 3"]
    assert not reply.array
    assert _call("stats.clear_statistics", "nope").values == []


# -- system and core ------------------------------------------------------------------


def test_list_methods_sorted_and_complete() -> None:
    names = _call("system.listMethods").values
    assert names == sorted(names)
    assert {"imc.list_rooms", "imc.list_members", "stats.get_statistics", "stats.fetch",
            "stats.fetchn", "stats.reset_statistics", "stats.clear_statistics",
            "system.listMethods", "system.methodHelp", "system.methodSignature",
            "core.version", "core.uptime", "core.info", "core.echo",
            "core.prints", "sidecar.rooms", "sidecar.members", "sidecar.events",
            "sidecar.messages", "sidecar.database"} == set(names)


def test_method_help() -> None:
    assert _call("system.methodHelp", "imc.list_rooms").values == ["List imc rooms."]
    assert _call("system.methodHelp", "imc.list_members").values == [
        "List members in an imc room."
    ]
    assert _fault("system.methodHelp") == (400, "Method Name Expected")
    assert _fault("system.methodHelp", "nope") == (400, "command not found")
    assert _fault("system.methodSignature", "imc.list_rooms") == (500, "Not Implemented Yet")


def test_version_and_uptime() -> None:
    assert _call("core.version").values == [version_string()]
    assert version_string().startswith("imc-sidecar ")
    before = int(time.time() - STARTED_AT)
    (uptime,) = _call("core.uptime").values
    assert isinstance(uptime, dict) and list(uptime) == ["now", "up_since", "uptime"]
    assert uptime["up_since"] == time.ctime(STARTED_AT)
    assert before <= uptime["uptime"] <= before + 2
    (info,) = _call("core.info").values
    assert isinstance(info, dict) and list(info) == ["version", "id", "compiler", "compiled",
                                                      "flags"]


def test_echo_and_prints() -> None:
    assert _call("core.echo", 1.5, 2, "x", True, "y").values == ["1", "2", "x"]
    assert _call("core.prints", "a", 1, "b").values == ["a"]


def test_unknown_method() -> None:
    with pytest.raises(MethodNotFound) as info:
        _call("nope.nope")
    assert (info.value.code, info.value.message) == (500, "Method Not Found")
