"""Process-wide runtime choices shared by the sidecar and its delivery workers."""

from __future__ import annotations

import asyncio
import gc
import resource
from collections.abc import Callable

__all__ = ["loop_factory", "raise_open_files", "tune_gc"]

# Cyclic GC: young-generation passes over 10k objects take about a millisecond (100k:
# 25-35 ms, too long a pause for p99); older generations are visited rarely.
_GC_THRESHOLDS = (10_000, 20, 100)


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop `event_loop` asks for; None: asyncio's default."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def tune_gc() -> None:
    """Fewer, larger cyclic garbage collections.

    The fan-out path allocates several small container objects per delivery, almost all
    dead within milliseconds, while rooms and transactions (up to 64*T1 seconds of them)
    live long: with the default thresholds (700, 10, 10) the collector ran hundreds of
    times a second and its older-generation passes took up to 170 ms.  What exists now
    (the state loaded at start-up) is moved out of the collector's sight (gc.freeze) so
    that full passes scale with the traffic, not with the number of rooms.
    """
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft limit on open files to `wanted`, as far as the hard
    limit allows (never lowering it); the soft limit now in force (`wanted` when there
    is none)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    if soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):  # above the kernel's fs.nr_open
            return soft
        soft = target
    return soft
