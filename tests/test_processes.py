"""Several issuer processes on one database: startup together, exactly once, tokens across instances.

Each test starts real uvicorn processes of one issuer configuration (same
secrets, same signing key, same database), as instances behind a load
balancer, and drives them over HTTP from many concurrent clients.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from factories import API_KEY, make_config, signing_key_pem
from payment_helpers import TRANSACTION_DATA, enroll, spc_assertion
from processes import issuer_processes
from softauthn import SoftAuthenticator

from spc_embed import Issuer


@pytest.fixture
def signing_key(tmp_path: Path) -> Path:
    path = tmp_path / "signing-key.pem"
    path.write_text(signing_key_pem(0))
    return path


def initialize_body(transaction_id: str, user_id: str = "alice") -> dict[str, Any]:
    return {"user_id": user_id, "transaction_id": transaction_id, "transaction_data": TRANSACTION_DATA}


async def post_all(requests: list[tuple[str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send every (url, body) at once, each on its own connection."""
    async with httpx.AsyncClient(headers={"apiKey": API_KEY}, timeout=30,
                                 limits=httpx.Limits(max_connections=len(requests))) as client:
        return await asyncio.gather(*(client.post(url, json=body) for url, body in requests))


def enrol_over_http(base_url: str, database_url: str) -> SoftAuthenticator:
    """Enrol alice through one instance's /enroll endpoints; the minting Issuer never opens the database."""
    minting = Issuer(make_config("unused.db", database_url=database_url))
    auth = SoftAuthenticator()
    with httpx.Client(base_url=base_url) as client:
        enroll(client, minting, auth)
    return auth


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


def test_two_processes_started_together_on_a_fresh_database_answer_their_first_requests(
        database_url: str, signing_key: Path) -> None:
    with issuer_processes(database_url, signing_key) as (a, b):
        responses = asyncio.run(post_all([
            (f"{(a, b)[i % 2]}/transaction/initialize", initialize_body(f"first-{i}")) for i in range(20)
        ]))
    assert statuses(responses) == {200: 20}, [r.text for r in responses if r.status_code != 200]


def test_one_transaction_id_initialized_40_times_over_two_processes_is_stored_once(
        database_url: str, signing_key: Path) -> None:
    with issuer_processes(database_url, signing_key) as (a, b):
        responses = asyncio.run(post_all([
            (f"{(a, b)[i % 2]}/transaction/initialize", initialize_body("same-id", user_id=f"user-{i % 3}"))
            for i in range(40)
        ]))
    assert statuses(responses) == {200: 1, 409: 39}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"transaction_exists"}


def test_one_assertion_finalized_40_times_over_two_processes_gives_one_token(
        database_url: str, signing_key: Path) -> None:
    with issuer_processes(database_url, signing_key) as (a, b):
        auth = enrol_over_http(a, database_url)
        init = httpx.post(f"{a}/transaction/initialize", json=initialize_body("pay-once"), headers={"apiKey": API_KEY})
        assert init.status_code == 200, init.text
        credential = spc_assertion(auth, init.json())
        body = {"transaction_id": "pay-once", "credential": credential}
        responses = asyncio.run(post_all([(f"{(a, b)[i % 2]}/transaction/finalize", body) for i in range(40)]))
    counts = statuses(responses)
    assert counts[200] == 1, [r.text for r in responses]
    assert all(400 <= r.status_code < 500 for r in responses if r.status_code != 200), counts


def test_payments_initialized_on_one_process_finalize_on_the_other_and_tokens_verify_on_both(
        database_url: str, signing_key: Path) -> None:
    payments = 200
    with issuer_processes(database_url, signing_key) as (a, b):
        auth = enrol_over_http(a, database_url)
        inits = asyncio.run(post_all([
            (f"{a}/transaction/initialize", initialize_body(f"cross-{i}")) for i in range(payments)
        ]))
        assert statuses(inits) == {200: payments}
        # One credential: its sign count moves with every assertion, so they are finalized in order.
        finals = []
        with httpx.Client(headers={"apiKey": API_KEY}) as client:
            for i, init in enumerate(inits):
                credential = spc_assertion(auth, init.json())
                finals.append(client.post(f"{b}/transaction/finalize",
                                          json={"transaction_id": f"cross-{i}", "credential": credential}))
            assert statuses(finals) == {200: payments}
            jwks_a = jwt.PyJWKSet.from_dict(client.get(f"{a}/.well-known/jwks.json").json())
            listed = client.get(f"{b}/transactions", params={"user_id": "alice"}).json()["transactions"]
    token = finals[-1].json()["token"]
    claims = jwt.decode(token, key=jwks_a[jwt.get_unverified_header(token)["kid"]], algorithms=["ES256"],
                        audience="merchant")
    assert claims["trans"]["id"] == f"cross-{payments - 1}"
    succeeded = [t["transaction_id"] for t in listed if t["state"] == "succeeded"]
    assert len(succeeded) == len(set(succeeded)) == min(payments, 100)  # the listing's page size
