"""The tables. Uniqueness and single use live here, as keys the database enforces."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "spc_users",
    metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),
    # WebAuthn user.id: random, so the bank's own id never reaches the authenticator.
    sa.Column("user_handle", sa.LargeBinary(64), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float(precision=53), nullable=False),
)

credentials = sa.Table(
    "spc_credentials",
    metadata,
    sa.Column("credential_id", sa.LargeBinary(1023), primary_key=True),
    sa.Column("user_id", sa.String(255), nullable=False, index=True),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("sign_count", sa.BigInteger, nullable=False),
    sa.Column("alg", sa.Integer, nullable=False),
    sa.Column("transports", sa.Text, nullable=False),
    sa.Column("aaguid", sa.String(36), nullable=False),
    sa.Column("attestation_format", sa.String(32), nullable=False),
    sa.Column("backup_eligible", sa.Boolean, nullable=False),
    sa.Column("backed_up", sa.Boolean, nullable=False),
    sa.Column("instrument_name", sa.String(255), nullable=False),
    sa.Column("instrument_icon", sa.Text, nullable=False),
    sa.Column("enrolled_origin", sa.String(255), nullable=False),
    sa.Column("nickname", sa.String(255), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float(precision=53), nullable=False),
    sa.Column("last_used_at", sa.Float(precision=53)),
    sa.Column("revoked_at", sa.Float(precision=53)),
)

challenges = sa.Table(
    "spc_challenges",
    metadata,
    sa.Column("challenge", sa.String(128), primary_key=True),
    # What ceremony the challenge belongs to ("registration", "payment", ...)
    # and to whom (an enrolment token id, a transaction key): checked on use.
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(512), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.Float(precision=53), nullable=False),
    sa.Column("used_at", sa.Float(precision=53)),
)

used_tokens = sa.Table(
    "spc_used_tokens",
    metadata,
    sa.Column("token_id", sa.String(64), primary_key=True),
    sa.Column("used_at", sa.Float(precision=53), nullable=False),
)

transactions = sa.Table(
    "spc_transactions",
    metadata,
    # The primary key is the tenant-wide uniqueness of transaction ids (SECURITY.md T2).
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("transaction_id", sa.String(128), primary_key=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("data_json", sa.Text, nullable=False),  # transaction_data as the merchant sent it
    sa.Column("data_hash", sa.String(64), nullable=False),
    sa.Column("challenge", sa.String(128), nullable=False, unique=True),
    # What initialize returned (the SPC request data), i.e. what the assertion must match.
    sa.Column("expected_json", sa.Text, nullable=False),
    sa.Column("merchant_origin", sa.String(255), nullable=False),
    sa.Column("credential_ids", sa.Text, nullable=False),  # offered, JSON list of base64url
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("failure_reason", sa.String(32)),
    sa.Column("created_at", sa.Float(precision=53), nullable=False),
    sa.Column("expires_at", sa.Float(precision=53), nullable=False),
    sa.Column("finalized_at", sa.Float(precision=53)),
    sa.Column("credential_id", sa.LargeBinary(1023)),  # the one that confirmed it
    sa.Column("method", sa.String(16)),  # "spc" or "fallback"
    sa.Column("browser_bound_public_key", sa.LargeBinary),  # COSE, verified (SPC browser binding)
    sa.Index("ix_spc_transactions_user", "tenant_id", "user_id"),
)

opt_outs = sa.Table(
    "spc_opt_outs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(255), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("transaction_id", sa.String(128), nullable=False),
    sa.Column("credential_ids", sa.Text, nullable=False),  # those offered when the user opted out
    sa.Column("reported_by", sa.String(300), nullable=False),  # "api_key" or "origin https://..."
    sa.Column("reported_at", sa.Float(precision=53), nullable=False),
    sa.Index("ix_spc_opt_outs_user", "tenant_id", "user_id"),
)
