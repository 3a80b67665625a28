"""Persistent state behind one small async interface.

SQLite (default: a file, zero set-up, group-committed durable writes) and
PostgreSQL (several app instances, asyncpg) run the same plans of SQL
statements (plans.py). Every "only once" rule (a challenge, an enrolment
token, a transaction id, a sign count step) is a unique key or a conditional
UPDATE, so it holds across processes.
"""

from __future__ import annotations

from .records import Challenge, Credential, OptOut, TransactionRecord, User
from .schema import SCHEMA_VERSION
from .store import Store

__all__ = [
    "SCHEMA_VERSION", "Challenge", "Credential", "OptOut", "Store", "TransactionRecord", "User",
]
