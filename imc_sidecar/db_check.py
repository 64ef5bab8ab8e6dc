"""`imc-sidecar db check`: do the live tables match what these settings expect?

The expectation is the metadata the sidecar creates its tables from (store/schema.py,
and history/tables.py when the history is on), built for the database's own dialect;
store/live.py reads the tables, store/drift.py compares.  Exit codes: 0 the tables
match (notes may be printed), 1 at least one difference, 2 the settings or the
database do not let us look (one line on stderr).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError

from .history.tables import build_history_tables
from .settings import Settings
from .store.connect import StoreError, open_engine, reason
from .store.drift import Difference, compare
from .store.live import read_live
from .store.schema import build_tables
from .store.urls import redact, to_async_url

__all__ = ["DIFFERENT", "MATCH", "UNCHECKED", "Checked", "check_database", "summary"]

MATCH, DIFFERENT, UNCHECKED = 0, 1, 2


@dataclass
class _Target:
    """One database to look at, and which of the sidecar's tables it should hold."""

    url: str
    setting: str  # the setting that names it, for error messages
    imc: bool
    history: bool


@dataclass(frozen=True)
class Checked:
    label: str  # the URL without its password
    tables: tuple[str, ...]
    differences: tuple[Difference, ...]


async def check_database(settings: Settings) -> int:
    """Print every difference, then a summary line; return the exit code."""
    results: list[Checked] = []
    for target in _targets(settings):
        try:
            results.append(await _check(target, settings))
        except StoreError as exc:
            print(f"imc-sidecar: {exc}", file=sys.stderr)
            return UNCHECKED
    for result in results:
        for difference in result.differences:
            print(difference)
    print(summary(results))
    failed = any(d.fails for r in results for d in r.differences)
    return DIFFERENT if failed else MATCH


def summary(results: Sequence[Checked]) -> str:
    """The last line of the report."""
    where = " and ".join(f"{', '.join(r.tables)} in {r.label}" for r in results)
    found = [d for r in results for d in r.differences]
    failing = sum(d.fails for d in found)
    notes = len(found) - failing
    noted = f" ({_count(notes, 'note')})" if notes else ""
    if failing:
        return f"{_count(failing, 'difference')}{noted} from what the sidecar expects: {where}"
    return f"the tables match what the sidecar expects{noted}: {where}"


def _targets(settings: Settings) -> list[_Target]:
    # The same databases `db create` makes tables in.
    rooms = _Target(settings.db_url, "db_url", imc=True, history=False)
    if not settings.history:
        return [rooms]
    url = settings.history_url or settings.db_url
    if url == settings.db_url:
        rooms.history = True
        return [rooms]
    return [rooms, _Target(url, "history_db_url", imc=False, history=True)]


async def _check(target: _Target, settings: Settings) -> Checked:
    _require_sqlite_file(target.url)
    engine, label = open_engine(target.url, target.setting, settings.db_connect_timeout)
    try:
        dialect = engine.dialect
        tables: list[Table] = []
        versions: dict[str, int] = {}
        version: Table | None = None
        if target.imc:
            imc = build_tables(
                engine.url.get_backend_name(), settings.rooms_table, settings.members_table
            )
            tables += imc.metadata.tables.values()
            versions, version = imc.versions(), imc.version
        if target.history:
            tables += build_history_tables().metadata.tables.values()
        limit = settings.db_connect_timeout + settings.db_statement_timeout
        try:
            async with asyncio.timeout(limit), engine.connect() as conn:
                live = await conn.run_sync(read_live, tables, version)
        except TimeoutError:
            raise StoreError(f"database {label} did not answer within {limit:g} s") from None
        except (DBAPIError, OSError, ImportError) as exc:
            raise StoreError(f"cannot check database {label}: {reason(exc)}") from None
        differences = compare(tables, versions, live, dialect)
        return Checked(label, tuple(t.name for t in tables), tuple(differences))
    finally:
        await engine.dispose()


def _require_sqlite_file(url_text: str) -> None:
    """Connecting would create a missing SQLite file: say that it is not there."""
    try:
        url = to_async_url(url_text)
    except ValueError:
        return  # open_engine words this one
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    if not Path(database).expanduser().is_file():
        raise StoreError(f"no SQLite database at {redact(url_text)}")


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
