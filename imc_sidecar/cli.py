"""`imc-sidecar serve | rpc METHOD ARGS | db create | db check | demo`: the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from .demo.cli import add_demo_arguments, run_demo_command
from .rpc.caller_cli import add_rpc_arguments, run_rpc
from .runtime import loop_factory
from .settings import Settings, SettingsError, add_arguments, load_settings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="imc-sidecar",
        description="SIP instant-message conferencing server, compatible with Kamailio's imc.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the SIP chat server")
    add_arguments(serve)
    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    create = db_commands.add_parser(
        "create", help="create the imc tables (and the usage-history tables) if missing"
    )
    add_arguments(create)
    check = db_commands.add_parser(
        "check", help="print how the tables differ from what these settings expect"
    )
    add_arguments(check)
    rpc = commands.add_parser(
        "rpc",
        help="call an admin RPC method (like kamcmd)",
        description="Call an admin RPC method and print the reply the way kamcmd does.",
    )
    add_rpc_arguments(rpc)
    demo = commands.add_parser("demo", help="generate realistic chat traffic against a sidecar")
    add_demo_arguments(demo)

    args = parser.parse_args(argv)
    if args.command == "rpc":
        return run_rpc(args)
    if args.command == "demo":
        return run_demo_command(args)
    try:
        settings = load_settings(args, os.environ)
    except SettingsError as exc:
        print(f"imc-sidecar: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        from .preflight import listen_problems

        problems = listen_problems(settings)
        for problem in problems:
            print(f"imc-sidecar: {problem}", file=sys.stderr)
        if problems:
            return 2
    with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
        if args.command == "serve":
            return runner.run(_serve(settings))
        if args.db_command == "check":
            from .db_check import check_database

            return runner.run(check_database(settings))
        return runner.run(_create_tables(settings))


async def _serve(settings: Settings) -> int:
    from .app import Sidecar

    sidecar = Sidecar(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # before start: a stop may come early
        loop.add_signal_handler(signum, stop.set)
    try:
        await sidecar.start()
    except Exception as exc:  # one clear line instead of a traceback at start-up
        logging.getLogger("imc_sidecar").error("cannot start: %s", exc)
        await sidecar.stop()
        return 1
    await stop.wait()
    logging.getLogger("imc_sidecar").info("stopping")
    await sidecar.stop()
    return 0


async def _create_tables(settings: Settings) -> int:
    from .store.repository import Store

    store = await Store.open(settings.db_url, settings.rooms_table, settings.members_table)
    await store.close()
    print("imc tables are in place")
    if settings.history:
        from .history.writer import HistoryWriter

        writer = await HistoryWriter.open(
            settings.history_url or settings.db_url, settings.history_flush_interval,
            settings.history_queue, settings.history_retention_days,
        )
        await writer.close()
        print("usage-history tables are in place")
    return 0
