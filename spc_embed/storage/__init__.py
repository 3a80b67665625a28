"""Persistent state behind one small async interface.

SQLAlchemy Core speaks to SQLite (default, a file, zero set-up) and to
PostgreSQL (several app instances) with the same statements. Every "only
once" rule (a challenge, an enrolment token, a transaction id, a sign count
step) is a unique key or a conditional UPDATE, so it holds across processes.
"""

from __future__ import annotations

from .records import Challenge, Credential, OptOut, TransactionRecord, User
from .schema import challenges, credentials, metadata, opt_outs, transactions, used_tokens, users
from .store import Store, async_url, payment_subject

__all__ = [
    "Challenge", "Credential", "OptOut", "Store", "TransactionRecord", "User", "async_url",
    "challenges", "credentials", "metadata", "opt_outs", "payment_subject", "transactions",
    "used_tokens", "users",
]
