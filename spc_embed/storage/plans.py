"""A storage operation written once for both databases: a plan of statements.

A plan is a generator that yields :class:`Statement` objects and receives each
one's result (a row count, a row, or a list of rows) before it yields the
next, so one plan can decide on what it has seen ("no row moved: refuse").
SQLite runs plans synchronously on its own connections, PostgreSQL awaits
asyncpg between the steps; the SQL and the decisions are the same.

Raising inside a write plan undoes that plan's writes (a savepoint or the
transaction is rolled back). A plan that must keep a write and still refuse
(marking a transaction expired while answering "too late") returns
``Refusal(error)`` instead: its writes commit, then the store raises.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from ..errors import SPCEmbedError

T = TypeVar("T")

ROWCOUNT, ROW, ROWS = "rowcount", "row", "rows"


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str  # placeholders $1, $2, ... (PostgreSQL's; SQLite reads them as ?1, ?2, ...)
    args: tuple[Any, ...]
    returns: str


@dataclass(frozen=True, slots=True)
class Refusal:
    error: SPCEmbedError


Plan = Generator[Statement, Any, T]
PlanFactory = Callable[[], Plan[T]]


def execute(sql: str, *args: Any) -> Statement:
    """A write; its result is the number of rows it inserted or changed."""
    return Statement(sql, args, ROWCOUNT)


def fetch_row(sql: str, *args: Any) -> Statement:
    """A query; its result is the first row as a tuple, or None."""
    return Statement(sql, args, ROW)


def fetch_rows(sql: str, *args: Any) -> Statement:
    """A query; its result is every row, as tuples."""
    return Statement(sql, args, ROWS)


@lru_cache(maxsize=512)
def sqlite_sql(sql: str) -> str:
    # SQLite's numbered parameters: "?1" is "$1". Our SQL has no "$" elsewhere.
    return sql.replace("$", "?")


@lru_cache(maxsize=64)
def placeholders(first: int, count: int) -> str:
    """``$first, $first+1, ...``: the parameter list of an IN clause."""
    return ", ".join(f"${i}" for i in range(first, first + count))
