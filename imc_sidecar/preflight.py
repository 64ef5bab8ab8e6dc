"""Start-up checks of every address the sidecar will listen on, before any listener starts.

Without them, a unix socket in a missing folder stopped start-up with a bare
`[Errno 2] No such file or directory`, naming neither the setting nor the path, after
other listeners had already logged that they were serving.  Each problem found here is
one line that names the setting and the address; `imc-sidecar serve` prints them all and
exits before binding anything for real.

A port that is free here can still be taken before the real bind (nothing can close that
race); then the real bind's error stops start-up as before.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

from .settings import Listen, RpcAddress, Settings

__all__ = ["listen_problems"]


def listen_problems(settings: Settings) -> list[str]:
    """One line per address that cannot be listened on, naming its setting."""
    return list(_problems(settings))


def _problems(settings: Settings) -> Iterator[str]:
    for listen in settings.sip_listen:
        problem = _try_bind(listen.transport, listen.host, listen.port)
        if problem:
            yield f"sip_listen: cannot listen on {listen}: {problem}"
    for name in ("rpc_http", "rpc_dgram", "rpc_binrpc"):
        addresses: tuple[RpcAddress, ...] = getattr(settings, name)
        for address in addresses:
            if address.kind == "unix":
                problem = _unix_path_problem(address.path)
            else:
                problem = _try_bind(address.kind, address.host, address.port)
            if problem:
                yield f"{name}: cannot listen on {address}: {problem}"
    if settings.rpc_fifo:
        problem = _unix_path_problem(settings.rpc_fifo)
        if problem:
            yield f"rpc_fifo: cannot create {settings.rpc_fifo}: {problem}"
    if settings.delivery_workers and settings.delivery_port:
        host = next((lst.host for lst in settings.sip_listen if lst.transport == "udp"), None)
        if host is None:
            yield "delivery_workers: needs a udp address in sip_listen to send from"
            return
        for i in range(settings.delivery_workers):
            port = settings.delivery_port + i
            problem = _try_bind("udp", host, port)
            if problem:
                shown = Listen("udp", host, port)
                yield (f"delivery_port: worker {i} cannot send from {shown} "
                       f"(delivery_port + {i}): {problem}")


def _unix_path_problem(path: str) -> str | None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"the folder {folder} does not exist (create it first)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable by this user"
    return None


def _try_bind(transport: str, host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound for `transport` now, or None."""
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(host, port, type=kind, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot resolve {host!r} ({exc.strerror or exc})"
    family, socktype, proto, _, address = infos[0]
    with socket.socket(family, socktype, proto) as probe:
        if kind == socket.SOCK_STREAM:
            # As asyncio's servers do: a port in TIME_WAIT is usable.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc.strerror or str(exc)
    return None
