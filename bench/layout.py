"""Who is in which room: shapes, member addresses, the databases and sipp's input file.

Member ``j`` of room ``r`` lives at ``127.N.r.(j+1)``, port 5060 (``N`` is 1 unless
``--member-net`` says otherwise: the smoke test picks its own, so that it can run while a
benchmark does).  Member 0 of every room
is its sender (imc skips the sender when it fans a message out, so a message to a room
of ``m`` members makes ``m - 1`` deliveries).

* Engine comparison: members are ``sip:u<r>x<j>@127.1.r.(j+1)`` (imc sends straight there).
* Deployment comparison: members are ``sip:u<r>x<j>@bench.test``; every member REGISTERs
  its socket as Contact, and the Kamailio in front finds it with ``lookup("location")``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DOMAIN = "bench.test"
OWNER = 1  # imc member flag bit (imc_mng.h IMC_MEMBER_OWNER)


@dataclass(frozen=True)
class Shape:
    rooms: int
    members: int

    @property
    def name(self) -> str:
        return f"{self.rooms}x{self.members}"

    @property
    def fanout(self) -> int:
        """Deliveries per room message (the sender is skipped)."""
        return self.members - 1

    @staticmethod
    def parse(text: str) -> Shape:
        rooms, members = text.lower().split("x")
        shape = Shape(int(rooms), int(members))
        if not (1 <= shape.rooms <= 250 and 2 <= shape.members <= 250):
            raise ValueError(f"shape {text}: 1-250 rooms of 2-250 members")
        return shape


SHAPES = (Shape(10, 10), Shape(1, 100), Shape(100, 5))
# the history target: the engine comparison's 10 x 10 and 100 x 5
HISTORY_SHAPES = (Shape(10, 10), Shape(100, 5))


def member_ip(room: int, index: int, net: int = 1) -> str:
    return f"127.{net}.{room}.{index + 1}"


def member_user(room: int, index: int) -> str:
    return f"u{room}x{index}"


def room_name(room: int) -> str:
    return f"chat-{room}"


@dataclass(frozen=True)
class Member:
    id: int
    room: int
    index: int
    net: int = 1

    @property
    def ip(self) -> str:
        return member_ip(self.room, self.index, self.net)

    @property
    def user(self) -> str:
        return member_user(self.room, self.index)


class Pool:
    """Every member address any shape needs; a member's id is stable across shapes."""

    def __init__(self, shapes: list[Shape], net: int = 1) -> None:
        if not 1 <= net <= 254:
            raise ValueError("member net: the second octet of 127.N.R.M, 1-254")
        ids: dict[tuple[int, int], int] = {}
        for shape in shapes:
            for room in range(shape.rooms):
                for index in range(shape.members):
                    ids.setdefault((room, index), len(ids))
        self.ids = ids
        self.members = [Member(i, r, j, net) for (r, j), i in ids.items()]

    def member(self, room: int, index: int) -> Member:
        return self.members[self.ids[(room, index)]]


@dataclass(frozen=True)
class Plan:
    """One run's traffic: sipp's input rows and who must receive each row's message.

    ``rows[k]`` is sent by call number ``k + 1``, ``k + 1 + len(rows)``, ...
    (sipp reads a SEQUENTIAL input file in order and wraps around).
    """

    csv_lines: list[str]
    recipients: list[tuple[int, ...]]

    def expected(self, seq: int) -> tuple[int, ...]:
        return self.recipients[(seq - 1) % len(self.recipients)]


def room_plan(pool: Pool, shape: Shape, *, deployment: bool) -> Plan:
    """Room messages round-robin over the rooms, each from the room's member 0."""
    lines = []
    recipients = []
    for room in range(shape.rooms):
        sender = pool.member(room, 0)
        host = DOMAIN if deployment else sender.ip
        lines.append(f"{room_name(room)};{sender.user};{host};{room};")
        recipients.append(tuple(pool.member(room, j).id for j in range(1, shape.members)))
    return Plan(lines, recipients)


def direct_plan(pool: Pool, shape: Shape) -> Plan:
    """The generator alone: one MESSAGE per member socket, round-robin (no engine)."""
    lines = []
    recipients: list[tuple[int, ...]] = []
    for room in range(shape.rooms):
        for j in range(1, shape.members):
            member = pool.member(room, j)
            lines.append(f"{member.user};{member.ip};{member.id};")
            recipients.append((member.id,))
    return Plan(lines, recipients)


def db_rows(
    pool: Pool, shape: Shape, *, deployment: bool
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, str, int]]]:
    """Rows of imc_rooms (name, domain, flag) and imc_members (username, domain, room, flag)."""
    rooms = [(room_name(r), DOMAIN, 0) for r in range(shape.rooms)]
    members = []
    for r in range(shape.rooms):
        uri = f"sip:{room_name(r)}@{DOMAIN}"
        for j in range(shape.members):
            m = pool.member(r, j)
            members.append((m.user, DOMAIN if deployment else m.ip, uri, OWNER if j == 0 else 0))
    return rooms, members


def _dbtext_field(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def write_dbtext(
    directory: Path, rooms: list[tuple[str, str, int]], members: list[tuple[str, str, str, int]]
) -> None:
    """Kamailio db_text tables (imc wipes them at start, so they are written before each)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "imc_rooms").open("w") as fh:
        fh.write("id(int,auto) name(string) domain(string) flag(int) \n")
        for number, row in enumerate(rooms, 1):
            fh.write(":".join(map(_dbtext_field, (number, *row))) + "\n")
    with (directory / "imc_members").open("w") as fh:
        fh.write("id(int,auto) username(string) domain(string) room(string) flag(int) \n")
        for number, mrow in enumerate(members, 1):
            fh.write(":".join(map(_dbtext_field, (number, *mrow))) + "\n")
    (directory / "version").write_text(
        "id(int,auto) table_name(string) table_version(int) \n0:imc_rooms:1\n0:imc_members:1\n"
    )


def create_sqlite(path: Path) -> str:
    """An empty SQLite database with Kamailio's imc tables, made by the sidecar itself."""
    path.unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    done = subprocess.run(
        [sys.executable, "-m", "imc_sidecar", "db", "create", "--db-url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"imc_sidecar db create failed: {done.stderr}")
    return url


def write_sqlite(
    path: Path, rooms: list[tuple[str, str, int]], members: list[tuple[str, str, str, int]]
) -> str:
    url = create_sqlite(path)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executemany("INSERT INTO imc_rooms (name, domain, flag) VALUES (?, ?, ?)", rooms)
        db.executemany(
            "INSERT INTO imc_members (username, domain, room, flag) VALUES (?, ?, ?, ?)", members
        )
    return url
