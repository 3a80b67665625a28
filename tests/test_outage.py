"""A database outage under load, through a real uvicorn issuer on PostgreSQL.

The server is stopped for five seconds while payments are in flight: every
affected request is answered 503 ``storage_unavailable`` with Retry-After (no
500, no reset connection, none waits past five seconds), the issuer heals by
itself within a second of the server's return, and a finalize interrupted by
the outage leaves its transaction pending and succeeds when retried.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
from factories import API_KEY, signing_key_pem
from payment_helpers import TRANSACTION_DATA, spc_assertion
from processes import issuer_processes
from test_processes import enrol_over_http

OUTAGE_SECONDS = 5


class Load:
    """Keep-alive clients initializing payments in a loop, recording every answer and its time."""

    def __init__(self, base_url: str, clients: int = 4) -> None:
        self.base_url = base_url
        self.answers: list[tuple[float, float, int | str, dict[str, Any] | None, str | None]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _run(self, n: int) -> None:
        # One client, one keep-alive connection: a reset would surface as a transport error.
        with httpx.Client(base_url=self.base_url, headers={"apiKey": API_KEY}, timeout=10,
                          limits=httpx.Limits(max_connections=1)) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                started = time.monotonic()
                try:
                    response = client.post("/transaction/initialize", json={
                        "user_id": "load-user", "transaction_id": f"load-{n}-{i}", "transaction_data": TRANSACTION_DATA,
                    })
                    status: int | str = response.status_code
                    body = response.json()
                    retry_after = response.headers.get("retry-after")
                except httpx.TransportError as exc:
                    status, body, retry_after = type(exc).__name__, None, None
                self.answers.append((started, time.monotonic(), status, body, retry_after))
                time.sleep(0.01)


def test_a_postgresql_outage_under_load_is_503_then_heals_by_itself(
        postgres_server: Any, postgres_url: str, tmp_path: Path) -> None:
    key = tmp_path / "signing-key.pem"
    key.write_text(signing_key_pem(0))
    with issuer_processes(postgres_url, key, count=1) as (base,):
        auth = enrol_over_http(base, postgres_url)
        api = httpx.Client(base_url=base, headers={"apiKey": API_KEY}, timeout=10)
        init = api.post("/transaction/initialize", json={
            "user_id": "alice", "transaction_id": "interrupted", "transaction_data": TRANSACTION_DATA})
        assert init.status_code == 200, init.text
        credential = spc_assertion(auth, init.json())
        finalize = {"transaction_id": "interrupted", "credential": credential}

        with Load(base) as load:
            time.sleep(1)
            postgres_server.stop()
            stopped = time.monotonic()
            time.sleep(0.5)
            during = api.post("/transaction/finalize", json=finalize)
            health_during = httpx.get(f"{base}/healthz")
            time.sleep(OUTAGE_SECONDS - 0.5)
            postgres_server.start()
            back = time.monotonic()
            time.sleep(2)

        health_after = httpx.get(f"{base}/healthz")
        assert (health_during.status_code, health_during.json()["code"]) == (503, "storage_unavailable")
        assert health_during.headers["retry-after"]
        assert (health_after.status_code, health_after.json()) == (200, {"status": "ok"})
        assert during.status_code == 503, during.text
        assert during.json()["code"] == "storage_unavailable" and during.headers["retry-after"]
        listed = api.get("/transactions", params={"user_id": "alice"}).json()["transactions"]
        assert {t["transaction_id"]: t["state"] for t in listed}["interrupted"] == "pending"
        retried = api.post("/transaction/finalize", json=finalize)
        assert retried.status_code == 200, retried.text
        api.close()

    answers = load.answers
    assert {a[2] for a in answers} <= {200, 503}, {a[2] for a in answers}
    refused = [a for a in answers if a[2] == 503]
    assert refused, "the load saw no outage: the test did not test anything"
    assert all(a[3] == {"code": "storage_unavailable", "message": a[3]["message"]} and a[4] for a in refused)
    assert max(a[1] - a[0] for a in answers) < 5, "a request hung"
    assert all(a[0] >= stopped - 1 for a in refused)
    healed = [a for a in answers if a[0] >= back + 1]
    assert healed and {a[2] for a in healed} == {200}, "not healed within a second of the server's return"
