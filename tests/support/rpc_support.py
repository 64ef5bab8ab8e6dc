"""A small RpcContext over a real engine, for the RPC unit tests."""

from __future__ import annotations

from imc_sidecar.history.recorder import HistoryRecorder
from imc_sidecar.imc.changes import StoredMember, StoredRoom
from imc_sidecar.imc.engine import EngineConfig, ImcEngine
from imc_sidecar.imc.model import MEMBER_INVITED, MEMBER_OWNER
from imc_sidecar.stats import Statistics

STARTED_AT = 1_700_000_000.0


class Context:
    def __init__(
        self, rooms: list[StoredRoom] | None = None, history: HistoryRecorder | None = None
    ) -> None:
        self.engine = ImcEngine(EngineConfig())
        if rooms:
            self.engine.load(rooms)
        self.stats = Statistics(lambda: self.engine)
        self.started_at = STARTED_AT
        self.history = history

    def database_status(self) -> dict[str, int | float | str]:
        return {"database": "", "reachable": 1, "seconds": 0, "outages": 0, "error": ""}


def _member(user: str, flags: int = 0) -> StoredMember:
    return StoredMember(user, "example.com", flags)


# The rooms of the e2e comparison: with hash_size 4 Kamailio lists chat-2, chat-1, lonely.
ROOMS = [
    StoredRoom("chat-1", "example.com", 0, (
        _member("alice", MEMBER_OWNER), _member("bob"), _member("carol", MEMBER_INVITED),
    )),
    StoredRoom("chat-2", "example.com", 1, (_member("dave", MEMBER_OWNER),)),
    StoredRoom("lonely", "example.com", 0, (_member("erin", MEMBER_OWNER),)),
]
