"""The admin methods, written once for every transport, with Kamailio's names and shapes.

Each handler mirrors the Kamailio function of the same name: the same parameters
scanned the same way (a string parameter must be a JSON string; optional trailing
ones are read until the first that is not), the same fault codes and texts, the same
values added.  Sources: imc.c (imc.*), kex core_stats.c (stats.*), core_cmd.c
(system.*, core.*).
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata

from ..sip.uri import UriError, parse_uri
from ..stats import Stat, Statistics
from .history_methods import register_history_methods
from .registry import (
    Registry,
    RpcContext,
    RpcFault,
    RpcMethod,
    RpcReply,
    RpcStruct,
    RpcValue,
)

__all__ = ["build_registry", "version_string"]

Handler = Callable[[RpcContext, Sequence[object]], RpcReply]


def build_registry() -> Registry:
    registry = Registry()

    def add(name: str, handler: Handler, doc: str, array: bool = False) -> None:
        registry.register(RpcMethod(name, handler, doc, array))

    add("imc.list_rooms", list_rooms, "List imc rooms.", array=True)
    add("imc.list_members", list_members, "List members in an imc room.")
    add("stats.get_statistics", get_statistics, "get core and modules stats", array=True)
    add("stats.fetch", fetch, "fetch core and modules stats as string values")
    add("stats.fetchn", fetchn, "fetch core and modules stats as number values")
    add("stats.reset_statistics", reset_statistics,
        "reset core and modules stats (silent operation)")
    add("stats.clear_statistics", clear_statistics,
        "clear core and modules stats (verbose operation)")
    add("system.listMethods", _list_methods(registry),
        "Lists all RPC methods supported by the server.", array=True)
    add("system.methodHelp", _method_help(registry), "Print the help string for given method.")
    add("system.methodSignature", method_signature, "Returns signature of given method.")
    add("core.version", core_version, "Returns the version string of the server.")
    add("core.info", core_info, "Verbose info, including version number, compile flags, "
        "compiler,repository hash a.s.o.")
    add("core.uptime", core_uptime, "Returns uptime of SIP server.")
    add("core.echo", core_echo, "Returns back its parameters.", array=True)
    add("core.prints", core_prints, "Returns the strings given as parameters.", array=True)
    register_history_methods(registry)  # ours, in the sidecar. namespace
    add("sidecar.database", database_status,
        "Whether the rooms' database answers: reachable (1/0), seconds in that state, "
        "outages, last error.")
    return registry


# -- parameter scanning, as Kamailio's rpc->scan() does it ------------------------------


def _strings(params: Sequence[object]) -> Iterator[str]:
    """`s` then `*s` repeatedly: string parameters up to the first that is not one."""
    for param in params:
        if not isinstance(param, str):
            return
        yield param


def _stat_names(params: Sequence[object], missing: str) -> list[str]:
    """The statistics named; a 400 fault with Kamailio's text `missing` when none is."""
    names = list(_strings(params))
    if not names:
        raise RpcFault(400, missing)
    return names


def _first_string(params: Sequence[object]) -> str | None:
    return params[0] if params and isinstance(params[0], str) else None


# -- imc -------------------------------------------------------------------------------


def list_rooms(context: RpcContext, params: Sequence[object]) -> RpcReply:
    reply = RpcReply()
    for room in context.engine.rooms():
        owner = room.members[0].uri if room.members else ""  # the list head, as Kamailio
        reply.add(RpcStruct(room=room.uri, members=len(room.members), owner=owner))
    return reply


def list_members(context: RpcContext, params: Sequence[object]) -> RpcReply:
    uri = _first_string(params)
    if uri is None:
        raise RpcFault(500, "No room name")
    if not uri or uri.startswith("."):
        raise RpcFault(500, "Empty room name")
    try:
        parse_uri(uri)
    except UriError:
        raise RpcFault(500, "Invalid room name") from None
    room = context.engine.find_room(uri)
    if room is None:
        raise RpcFault(500, "Room not found")
    members: list[RpcValue] = [member.uri for member in room.members]
    result = RpcStruct(room=room.uri, members=members, count=len(members))
    result.one_call = True  # one struct_add("S[d") in imc.c: BINRPC drops `count`
    reply = RpcReply()
    reply.add(result)
    return reply


# -- stats (kex core_stats.c) ----------------------------------------------------------


def _select(stats: Statistics, name: str) -> list[Stat]:
    """`all`, `group:`, or one bare statistic name."""
    if name == "all":
        return list(stats)
    if name.endswith(":"):
        return stats.group(name[:-1])
    stat = stats.find(name)
    return [stat] if stat is not None else []


def _select_fetch(stats: Statistics, name: str) -> list[Stat]:
    """As _select(), plus `group.name` and `group:name` (fetch only)."""
    found = _select(stats, name)
    if found or name == "all" or name.endswith(":"):
        return found
    for separator in (".", ":"):
        group, sep, bare = name.partition(separator)
        if sep:
            stat = stats.find(bare)
            return [stat] if stat is not None and stat.group == group else []
    return []


def get_statistics(context: RpcContext, params: Sequence[object]) -> RpcReply:
    names = _stat_names(params, "Please provide which stats to retrieve")
    reply = RpcReply()
    for name in names:
        for stat in _select(context.stats, name):
            reply.add(f"{stat.group}:{stat.name} = {stat.value}")
    return reply


def _fetch(context: RpcContext, params: Sequence[object], numbers: bool) -> RpcReply:
    names = _stat_names(params, "Please provide which stats to retrieve")
    result = RpcStruct()
    for name in names:
        for stat in _select_fetch(context.stats, name):
            value = stat.value
            result[f"{stat.group}.{stat.name}"] = value if numbers else str(value)
    reply = RpcReply()
    reply.add(result)
    return reply


def fetch(context: RpcContext, params: Sequence[object]) -> RpcReply:
    return _fetch(context, params, numbers=False)


def fetchn(context: RpcContext, params: Sequence[object]) -> RpcReply:
    return _fetch(context, params, numbers=True)


def reset_statistics(context: RpcContext, params: Sequence[object]) -> RpcReply:
    names = _stat_names(params, "Please provide stats name")
    for name in names:
        for stat in _select(context.stats, name):
            context.stats.reset(stat)
    return RpcReply()


def clear_statistics(context: RpcContext, params: Sequence[object]) -> RpcReply:
    """Reset, printing `g:n = new (old)`; a non-array method, so only the last line shows."""
    names = _stat_names(params, "Please provide stats name")
    reply = RpcReply()
    for name in names:
        for stat in _select(context.stats, name):
            old = stat.value
            context.stats.reset(stat)
            new = stat.value
            line = f"{stat.group}:{stat.name} = {new}"
            reply.add(line if old == new else f"{line} ({old})")
    return reply


# -- system and core (core_cmd.c) ------------------------------------------------------


def _list_methods(registry: Registry) -> Handler:
    def list_methods(context: RpcContext, params: Sequence[object]) -> RpcReply:
        return RpcReply(values=list(sorted(registry.names())))

    return list_methods


def _method_help(registry: Registry) -> Handler:
    def method_help(context: RpcContext, params: Sequence[object]) -> RpcReply:
        name = _first_string(params)
        if name is None:
            raise RpcFault(400, "Method Name Expected")
        method = registry.get(name)
        if method is None:
            raise RpcFault(400, "command not found")
        return RpcReply(values=[method.doc or "undocumented"])

    return method_help


def method_signature(context: RpcContext, params: Sequence[object]) -> RpcReply:
    raise RpcFault(500, "Not Implemented Yet")


def _package_version() -> str:
    try:
        return metadata.version("imc-sidecar")
    except metadata.PackageNotFoundError:
        return "unknown"


def version_string() -> str:
    """Shaped like Kamailio's `kamailio 5.6.3 (x86_64/linux)`."""
    system = platform.system().lower() or "unknown"
    return f"imc-sidecar {_package_version()} ({platform.machine() or 'unknown'}/{system})"


def core_version(context: RpcContext, params: Sequence[object]) -> RpcReply:
    return RpcReply(values=[version_string()])


def core_info(context: RpcContext, params: Sequence[object]) -> RpcReply:
    info = RpcStruct(
        version=f"imc-sidecar {_package_version()}",
        id="unknown",
        compiler=f"{platform.python_implementation()} {platform.python_version()}",
        compiled="",
        flags="",
    )
    return RpcReply(values=[info])


def core_uptime(context: RpcContext, params: Sequence[object]) -> RpcReply:
    now = time.time()
    # ctime(): local time, "Fri Nov 27 04:13:24 2026", as Kamailio prints it.
    uptime = RpcStruct(
        now=time.ctime(now),
        up_since=time.ctime(context.started_at),
        uptime=int(now - context.started_at),
    )
    return RpcReply(values=[uptime])


def database_status(context: RpcContext, params: Sequence[object]) -> RpcReply:
    return RpcReply(values=[RpcStruct(context.database_status())])


def core_echo(context: RpcContext, params: Sequence[object]) -> RpcReply:
    """Strings back; a number becomes its unsigned integer text (`*.s`); stops otherwise."""
    reply = RpcReply()
    for param in params:
        if isinstance(param, str):
            reply.add(param)
        elif isinstance(param, int | float) and not isinstance(param, bool):
            if not math.isfinite(param):
                break
            reply.add(str(int(param) % 2**64))
        else:
            break
    return reply


def core_prints(context: RpcContext, params: Sequence[object]) -> RpcReply:
    return RpcReply(values=list(_strings(params)))
