"""`Client`: the sidecar's rooms, members, statistics and usage history as DataFrames.

    from imc_sidecar.client import Client
    client = Client("http://127.0.0.1:5092/RPC", token=None)       # a running sidecar
    client = Client.from_db("sqlite:///imc-sidecar.sqlite")         # or its database
    client.rooms(); client.messages(since="2026-11-01"); client.delivery_report()

Every frame has the columns and dtypes of schema.FRAMES.  Times given to the
history methods may be datetimes, strings or pandas Timestamps; naive ones are UTC.
"""

from __future__ import annotations

import datetime as dt
from types import TracebackType

import pandas as pd
from tqdm.auto import tqdm

from ..history.query import MAX_PAGE, HistoryFilter, Page
from . import aggregate
from .aggregate import By
from .frames import history_frame, members_frame, rooms_frame, stats_frame
from .sources import DbSource, RpcSource, Source

__all__ = ["DEFAULT_URL", "Client", "TimeLike"]

DEFAULT_URL = "http://127.0.0.1:5092/RPC"
TimeLike = dt.datetime | dt.date | str | pd.Timestamp


class Client:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        page_size: int = MAX_PAGE,
        *,
        timeout: float = 30.0,
        progress: bool = True,
    ) -> None:
        """Read a running sidecar over its HTTP RPC (`token`: its rpc_token, if set)."""
        self._setup(RpcSource(url, token, timeout), page_size, progress)

    @classmethod
    def from_db(
        cls,
        db_url: str,
        rooms_table: str = "imc_rooms",
        members_table: str = "imc_members",
        page_size: int = MAX_PAGE,
        *,
        history_db_url: str | None = None,
        progress: bool = True,
    ) -> Client:
        """Read the database directly (Kamailio-style or SQLAlchemy URL), read-only.

        Works while a sidecar writes to it, and on a database only Kamailio wrote
        (no history tables: the history frames are empty).  `stats()` then has only
        what the tables tell: active_rooms and members.  `history_db_url`: where the
        history is when the sidecar runs with that setting.
        """
        source = DbSource(db_url, rooms_table, members_table, history_db_url)
        client = cls.__new__(cls)
        client._setup(source, page_size, progress)
        return client

    def _setup(self, source: Source, page_size: int, progress: bool) -> None:
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE}")
        self._source = source
        self.page_size = page_size
        self.progress = progress

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- state now ---------------------------------------------------------------------

    def rooms(self) -> pd.DataFrame:
        return rooms_frame(self._source.rooms())

    def members(self, room: str | None = None) -> pd.DataFrame:
        return members_frame(self._source.members(room))

    def stats(self) -> pd.DataFrame:
        return stats_frame(self._source.stats())

    # -- history -----------------------------------------------------------------------

    def events(
        self,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        room: str | None = None,
        kind: str | None = None,
    ) -> pd.DataFrame:
        where = HistoryFilter(_micros(since), _micros(until), room, kind=kind)
        return self._history("events", where)

    def messages(
        self,
        since: TimeLike | None = None,
        until: TimeLike | None = None,
        room: str | None = None,
        sender: str | None = None,
    ) -> pd.DataFrame:
        where = HistoryFilter(_micros(since), _micros(until), room, sender=sender)
        return self._history("messages", where)

    def _history(self, which: str, where: HistoryFilter) -> pd.DataFrame:
        """Every page; a progress bar from the second page on (the total is unknown)."""
        page = self._source.page(which, where, 0, self.page_size)
        columns, rows = page.columns, list(page.rows)
        if page.next is not None:
            with tqdm(desc=which, unit=" rows", initial=len(rows),
                      disable=not self.progress) as bar:
                while page.next is not None:
                    page = self._next(which, where, page)
                    rows.extend(page.rows)
                    bar.update(len(page.rows))
        return history_frame(which, columns, rows)

    def _next(self, which: str, where: HistoryFilter, page: Page) -> Page:
        assert page.next is not None
        return self._source.page(which, where, page.next, self.page_size)

    # -- aggregations ------------------------------------------------------------------

    def activity(
        self,
        freq: str | None = None,
        by: By = "room",
        since: TimeLike | None = None,
        until: TimeLike | None = None,
    ) -> pd.DataFrame:
        """Chat messages per bucket; `freq` None picks one giving about 20-200 buckets
        over the data's span (frame.attrs["freq"] says which)."""
        return aggregate.activity(self.messages(since, until), freq, by)

    def top_senders(
        self, n: int = 10, since: TimeLike | None = None, until: TimeLike | None = None
    ) -> pd.DataFrame:
        return aggregate.top_senders(self.messages(since, until), n)

    def invite_funnel(
        self, since: TimeLike | None = None, until: TimeLike | None = None
    ) -> pd.DataFrame:
        """Invitations per room and how they ended (pending ones from members())."""
        return aggregate.invite_funnel(self.events(since, until), self.members())

    def delivery_report(
        self, since: TimeLike | None = None, until: TimeLike | None = None
    ) -> pd.DataFrame:
        return aggregate.delivery_report(self.messages(since, until))


def _micros(value: TimeLike | None) -> int | None:
    """UTC microseconds since the epoch; a naive time is taken as UTC."""
    if value is None:
        return None
    if isinstance(value, int | float):  # pd.Timestamp(number) would mean nanoseconds
        raise TypeError("give a datetime, a date, a string or a pandas Timestamp")
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1000)
