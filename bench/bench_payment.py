"""How long the issuer spends on one payment: initialize and finalize, end to end.

Runs the real app (SQLite file in a temporary directory) through Starlette's
TestClient, no network, with one enrolled credential from the software
authenticator. The authenticator's signing happens outside the timed calls.
Prints mean and median milliseconds per call, and the ratio to a trivial
endpoint (the JWKS) on the same client, so the framework's own cost is visible.

    .venv/bin/python bench/bench_payment.py [--rounds 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from factories import API_KEY, make_issuer  # noqa: E402
from payment_helpers import enroll, spc_assertion  # noqa: E402
from softauthn import SoftAuthenticator  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

TRANSACTION = {"amount": "100.00", "currency": "EUR", "payee_name": "Test Merchant",
               "payee_origin": "https://merchant.test"}


def timed(samples: list[float], call):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = call()
    samples.append((time.perf_counter() - start) * 1000)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    rounds = parser.parse_args().rounds
    headers = {"apiKey": API_KEY}
    with tempfile.TemporaryDirectory() as directory:
        issuer = make_issuer(Path(directory) / "bench.db")
        auth = SoftAuthenticator()
        with TestClient(issuer.app) as client:
            enroll(client, issuer, auth, user_id="bench")
            baseline: list[float] = []
            initialize: list[float] = []
            finalize: list[float] = []
            for i in range(rounds):
                timed(baseline, lambda: client.get("/.well-known/jwks.json"))
                body = {"user_id": "bench", "transaction_id": f"t-{i}", "transaction_data": TRANSACTION}
                init = timed(initialize, partial(client.post, "/transaction/initialize", json=body, headers=headers))
                assert init.status_code == 200, init.text
                credential = spc_assertion(auth, init.json())
                done = timed(finalize, partial(
                    client.post, "/transaction/finalize", json={"transaction_id": f"t-{i}", "credential": credential},
                    headers=headers))
                assert done.status_code == 200, done.text
    base = statistics.median(baseline)
    print(f"{rounds} payments, SQLite, in-process ASGI (no network)")
    print(f"{'call':<26}{'mean ms':>9}{'median ms':>11}{'vs JWKS GET':>13}")
    for name, samples in (("GET jwks (baseline)", baseline), ("POST initialize", initialize),
                          ("POST finalize", finalize)):
        median = statistics.median(samples)
        print(f"{name:<26}{statistics.mean(samples):>9.2f}{median:>11.2f}{median / base:>12.1f}x")
    total = statistics.median(initialize) + statistics.median(finalize)
    print(f"one payment (initialize + finalize): {total:.2f} ms median, ~{1000 / total:.0f} payments/s on one core")


if __name__ == "__main__":
    main()
