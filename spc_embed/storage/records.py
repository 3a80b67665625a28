"""What the store hands back: immutable records, free of any database type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class User:
    user_id: str
    user_handle: bytes
    name: str
    display_name: str


@dataclass(frozen=True)
class Credential:
    credential_id: bytes
    user_id: str
    public_key: bytes
    sign_count: int
    alg: int
    transports: tuple[str, ...]
    aaguid: str
    attestation_format: str
    backup_eligible: bool
    backed_up: bool
    instrument_name: str
    instrument_icon: str
    enrolled_origin: str
    created_at: float
    nickname: str = ""
    last_used_at: float | None = None
    revoked_at: float | None = None
    # The card this credential confirms payments for (docs/security.md H6); its name when no id was given.
    instrument_id: str = ""

    def __post_init__(self) -> None:
        if not self.instrument_id:
            object.__setattr__(self, "instrument_id", self.instrument_name)


@dataclass(frozen=True)
class Challenge:
    challenge: str
    purpose: str
    subject: str
    user_id: str
    expires_at: float
    used_at: float | None = None


@dataclass(frozen=True)
class TransactionRecord:
    tenant_id: str
    transaction_id: str
    user_id: str
    data: dict[str, Any]
    data_hash: str
    challenge: str
    expected: dict[str, Any]
    merchant_origin: str
    credential_ids: tuple[str, ...]  # base64url, as offered
    state: str
    created_at: float
    expires_at: float
    failure_reason: str | None = None
    finalized_at: float | None = None
    credential_id: bytes | None = None
    method: str | None = None
    browser_bound_public_key: bytes | None = None


@dataclass(frozen=True)
class OptOut:
    tenant_id: str
    user_id: str
    transaction_id: str
    credential_ids: tuple[str, ...]
    reported_by: str
    reported_at: float
