"""What several fuzz targets share: the state a refused input must leave alone, and the
chunking of a stream."""

from __future__ import annotations

import random
from collections.abc import Sequence

from rpc_support import Context

from imc_sidecar.imc.engine import ImcEngine

__all__ = ["chunks", "rooms_state", "rpc_state"]

RoomsState = list[tuple[str, int, list[tuple[str, int]]]]


def rooms_state(engine: ImcEngine) -> RoomsState:
    """Every room, its flags, and its members with their flags, in table order."""
    return [(r.uri, r.flags, [(m.uri, m.flags) for m in r.members]) for r in engine.rooms()]


def rpc_state(context: Context) -> tuple[RoomsState, list[tuple[str, int]]]:
    """The rooms and every statistic an RPC method could change."""
    return rooms_state(context.engine), [(s.name, s.value) for s in context.stats]


def chunks(seed: bytes, data: bytes, most_choices: Sequence[int]) -> list[bytes]:
    """`data` cut into chunks of 1..most bytes, `most` and the cuts drawn from `seed`."""
    rng = random.Random(seed)
    most = rng.choice(most_choices)
    pieces = []
    at = 0
    while at < len(data):
        size = rng.randint(1, most)
        pieces.append(data[at : at + size])
        at += size
    return pieces
