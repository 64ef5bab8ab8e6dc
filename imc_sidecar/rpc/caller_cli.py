"""The `imc-sidecar rpc` subcommand: arguments, the call, output and exit status."""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["EXIT_FAULT", "EXIT_TRANSPORT", "add_rpc_arguments", "run_rpc"]

EXIT_FAULT = 1  # the method answered with a fault (kamcmd exits 0 even then)
EXIT_TRANSPORT = 3  # no answer: connection refused, timeout, malformed reply, bad -s
TOKEN_ENV = "IMC_RPC_TOKEN"


def add_rpc_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-s",
        dest="address",
        metavar="ADDR",
        default=None,
        help="where to send the call: http://HOST:PORT/RPC (JSON-RPC, the default "
        "http://127.0.0.1:5092/RPC), tcp:HOST:PORT or unix:/path (BINRPC, like kamcmd), "
        "udp:HOST:PORT (one JSON-RPC datagram, like kamcli)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"bearer token for the HTTP transport (default: ${TOKEN_ENV})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON instead of kamcmd's text"
    )
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="SECONDS", help="default: %(default)s"
    )
    parser.add_argument("method", help="the RPC method, e.g. imc.list_rooms")
    parser.add_argument(
        "args",
        nargs=argparse.REMAINDER,
        help="parameters, typed like kamcmd: 12 is an int, 2.5 a double, s:12 the string 12",
    )


def run_rpc(args: argparse.Namespace) -> int:
    from .caller import DEFAULT_URL, RpcClientError, call
    from .caller_format import format_fault, format_json, format_kamcmd, parse_arg

    params = [parse_arg(text) for text in args.args]
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    try:
        result = call(
            args.address or DEFAULT_URL,
            args.method,
            params,
            token=token,
            timeout=args.timeout,
        )
    except RpcClientError as exc:
        print(f"imc-sidecar rpc: {exc}", file=sys.stderr)
        return EXIT_TRANSPORT
    if result.fault is not None:
        code, message = result.fault
        if args.json:
            sys.stdout.write(format_json({"error": {"code": code, "message": message}}))
        else:
            sys.stdout.write(format_fault(code, message))
        return EXIT_FAULT
    sys.stdout.write(format_json(result.json) if args.json else format_kamcmd(result.values))
    return 0
