"""Instructions per request, counted by valgrind's callgrind: numbers this shared machine's load cannot move.

Served runs here drift by a fifth from one minute to the next (docs/benchmarks.md), so a change worth a few
percent cannot be told apart by timing. Counting can: callgrind runs the program on a simulated processor and
counts every instruction it executes, the same count to a fraction of a percent from run to run. It counts
work, not time (a cache miss or a wait for a lock costs nothing here), so it complements ``bench/served.py``,
whose ratios the targets are about; it does not replace it.

    .venv/bin/python bench/instructions.py                        # every case
    .venv/bin/python bench/instructions.py initialize finalize    # some of them

The request cases call the apps as ``bench/served.py`` serves them, but in process, as ASGI (no server, no
network), 16 requests at a time on one event loop:

- ``reference``: the hand-written reference of ``bench/served_apps.py`` (parse and verify one assertion);
- ``initialize``: ``POST /transaction/initialize``, a new transaction id each time, for an enrolled cardholder
  (a fresh SQLite file, durable defaults, start-up objects frozen as ``spc-embed serve`` freezes them);
- ``finalize``: ``POST /transaction/finalize`` with pre-signed, single-use assertions.

Three pieces of initialize are called on their own: ``payment_handle`` and ``opt_out_token`` (the tokens it
mints) and ``transaction_data`` (``parse_transaction_data``, the canonical JSON and its hash included).

Each case runs in a process of its own under callgrind, counting switched off during set-up
(``--instr-atstart=no``). When the process says it is ready, counting is switched on (``callgrind_control``);
it makes its calls and exits at once. Run once with N calls and once with none, the difference over N is the
count per call. Installs Debian's ``valgrind`` with apt when missing. Takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
sys.path.insert(0, str(BENCH))

from served import ensure_debian_tool, reference_assertion  # noqa: E402

CONCURRENCY = 16
CALLS = {"reference": 300, "initialize": 400, "finalize": 300,
         "payment_handle": 2000, "opt_out_token": 2000, "transaction_data": 2000}
TRANSACTION_DATA = {"amount": "100.00", "currency": "EUR", "payee_name": "Test Merchant",
                    "payee_origin": "https://merchant.test"}


# The child: set up one case, wait for counting to start, make the calls, exit.


def asgi_calls(app: Any, path: str, bodies: list[bytes], headers: dict[str, str]) -> Callable[[], None]:
    """All of ``bodies`` POSTed to ``app`` as ASGI, CONCURRENCY at a time; every answer must be a 200."""
    raw_headers = [(b"content-type", b"application/json"), *((k.lower().encode(), v.encode()) for k, v in headers.items())]

    async def post(body: bytes) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"127.0.0.1"), (b"content-length", str(len(body)).encode()), *raw_headers],
                 "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if received:  # a request body is read once; afterwards wait, as a server does for a disconnect
                await asyncio.Event().wait()
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        statuses = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, receive, send)
        if statuses != [200]:
            raise SystemExit(f"{path} answered {statuses}")

    async def worker(queue: list[bytes]) -> None:
        while queue:
            await post(queue.pop())

    async def all_of_them() -> None:
        queue = list(bodies)
        await asyncio.gather(*(worker(queue) for _ in range(CONCURRENCY)))

    loop = asyncio.new_event_loop()
    return lambda: loop.run_until_complete(all_of_them())


def reference_case(n: int) -> Callable[[], None]:
    import served_apps

    assertion, os.environ["SPC_BENCH_REFERENCE"] = reference_assertion()
    body = json.dumps({"credential": assertion}).encode()
    return asgi_calls(served_apps.reference_app(), "/verify", [body] * n, {})


def issuer_case(n: int, endpoint: str) -> Callable[[], None]:
    """initialize or finalize on a fresh issuer with one enrolled cardholder."""
    from factories import API_KEY, make_config
    from payment_helpers import enroll, spc_assertion
    from softauthn import SoftAuthenticator
    from starlette.testclient import TestClient

    from spc_embed import Issuer
    from spc_embed.cli import ready_to_serve

    issuer = Issuer(make_config(Path(tempfile.mkdtemp()) / "instructions.db"))
    auth, headers = SoftAuthenticator(), {"apiKey": API_KEY}
    initialize = [{"user_id": "bench", "transaction_id": f"t-{i}", "transaction_data": TRANSACTION_DATA}
                  for i in range(n)]
    bodies = [json.dumps(b).encode() for b in initialize]
    with TestClient(issuer.app) as client:
        enroll(client, issuer, auth, user_id="bench")
        if endpoint == "finalize":  # the transactions initialized, one assertion signed for each
            bodies = []
            for body in initialize:
                options = client.post("/transaction/initialize", json=body, headers=headers).json()
                credential = spc_assertion(auth, options, sign_count=0)  # any order: no counter to refuse it
                bodies.append(json.dumps({"transaction_id": body["transaction_id"], "credential": credential}).encode())
    app = ready_to_serve(issuer.app)
    calls = asgi_calls(app, f"/transaction/{endpoint}", bodies, headers)
    asyncio.run(issuer.store.open())  # TestClient closed it on leaving; the store serves any event loop
    return calls


def piece_case(n: int, name: str) -> Callable[[], None]:
    from spc_embed.tokens import OptOutTokens, PaymentHandles
    from spc_embed.transactions import parse_transaction_data

    key = secrets.token_urlsafe(32)
    handles, opt_outs = PaymentHandles([key], max_age=900), OptOutTokens([key])
    one: Callable[[], object] = {
        "payment_handle": lambda: handles.mint("merchant", "order-10042"),
        "opt_out_token": lambda: opt_outs.mint("merchant", "order-10042"),
        "transaction_data": lambda: parse_transaction_data(TRANSACTION_DATA),
    }[name]
    one()

    def run() -> None:
        for _ in range(n):
            one()

    return run


def child(case: str, n: int) -> None:
    if case == "reference":
        run = reference_case(n)
    elif case in ("initialize", "finalize"):
        run = issuer_case(n, case)
    else:
        run = piece_case(n, case)
    print("ready", flush=True)
    sys.stdin.readline()  # counting is on
    run()
    os._exit(0)  # no clean-up counted


# The parent: each case twice under callgrind, with N calls and with none.


def count(case: str, n: int, directory: Path) -> int:
    """Instructions counted while ``case`` made ``n`` calls."""
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={directory / f'{case}-{n}.out'}",
               sys.executable, str(Path(__file__).resolve()), "--child", case, str(n)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdin and process.stdout
    line = process.stdout.readline()
    if line.strip() != "ready":
        process.kill()
        raise SystemExit(f"{case}: the child did not get ready: {line!r} {process.communicate()[1][-2000:]}")
    subprocess.run(["callgrind_control", "--instr=on", str(process.pid)], check=True, capture_output=True)
    process.stdin.write("go\n")
    process.stdin.flush()
    _, errors = process.communicate()
    found = re.search(r"Collected : (\d+)", errors)
    if process.returncode != 0 or not found:
        raise SystemExit(f"{case}: exit status {process.returncode}: {errors[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", metavar="case", help=f"some of {', '.join(CALLS)} (default: all)")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    unknown = [case for case in args.cases if case not in CALLS]
    if unknown:
        parser.error(f"unknown case {', '.join(unknown)}; the cases are {', '.join(CALLS)}")
    ensure_debian_tool("valgrind")
    print("| case | calls | instructions per call | vs reference |\n|---|---|---|---|", flush=True)
    reference = None
    with tempfile.TemporaryDirectory() as directory:
        for case in args.cases or list(CALLS):
            n = CALLS[case]
            per_call = (count(case, n, Path(directory)) - count(case, 0, Path(directory))) // n
            if case == "reference":
                reference = per_call
            ratio = "" if reference is None or case not in ("initialize", "finalize") else f"{per_call / reference:.2f}x"
            print(f"| {case} | {n} | {per_call:,} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
