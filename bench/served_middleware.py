"""SPCMerchantMiddleware served for real: uvicorn processes loaded by wrk.

Three apps serve the same 50 KB HTML page (``bench_middleware.PAGE``): no
middleware ("bare"), the middleware adding its header, and the middleware
adding the header and injecting the script. Each is its own uvicorn process
(uvloop, httptools, one worker, no access log), loaded by wrk at 16
connections, in two rounds. Within a round the apps take turns in short
slices (2 s each by default, the order rotating), so a burst of load from
other work on a shared machine lands on all three alike; each round's
requests/s are then compared with that round's bare app. The server's CPU
time per request (user + system, from /proc) is printed too.

``--floors`` adds two apps that show what any implementation pays: the bare
page with the same Permissions-Policy header sent by the app itself, and a
hand-written minimal injector (header, one copy of the page with the tag
inserted, new Content-Length, nothing checked).

    flock /tmp/spc-bench.lock .venv/bin/python bench/served_middleware.py [--duration 10]

Installs Debian's ``wrk`` with apt when it is missing. This module is also what
uvicorn imports: ``served_middleware:bare``, ``:header``, ``:header_script``.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_middleware import ISSUER, PAGE  # noqa: E402

from spc_embed.merchant import SPCMerchantMiddleware  # noqa: E402

SCRIPT_URL = ISSUER + "/spc/widget/spc-merchant.js"
APPS = ("bare", "header", "header_script")
# --floors: what any implementation pays, for scale.
FLOORS = ("header_by_app", "minimal_injection")
LABELS = {
    "bare": "bare",
    "header": "header only",
    "header_script": "header + script",
    "header_by_app": "floor: app's own header",
    "minimal_injection": "floor: minimal inject",
}


async def page(request: Request) -> Response:
    return Response(PAGE, media_type="text/html")


def _app(*, merchant_kit: bool, **options: object) -> Starlette:
    middleware = [Middleware(SPCMerchantMiddleware, issuer_origins=[ISSUER], **options)] if merchant_kit else []
    return Starlette(routes=[Route("/", page)], middleware=middleware)


bare = _app(merchant_kit=False)
header = _app(merchant_kit=True)
header_script = _app(merchant_kit=True, script_url=SCRIPT_URL)

POLICY = SPCMerchantMiddleware(bare, issuer_origins=[ISSUER]).default_policy_raw
SNIPPET = f'<script type="module" src="{SCRIPT_URL}"></script>'.encode()


async def page_with_policy(request: Request) -> Response:
    return Response(PAGE, media_type="text/html", headers={"Permissions-Policy": POLICY[1].decode()})


class MinimalInjection:
    """The least a middleware can do to inject: this benchmark's page only (one body message,
    a Content-Length, a lowercase </head>), nothing checked; the page is still copied once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start: Message = {}

        async def send_injected(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            body = message["body"]
            at = body.find(b"</head>")
            message["body"] = b"".join((body[:at], SNIPPET, memoryview(body)[at:]))
            length = b"%d" % len(message["body"])
            start["headers"] = [(k, length if k == b"content-length" else v) for k, v in start["headers"]] + [POLICY]
            await send(start)
            await send(message)

        await self.app(scope, receive, send_injected)


header_by_app = Starlette(routes=[Route("/", page_with_policy)])
minimal_injection = Starlette(routes=[Route("/", page)], middleware=[Middleware(MinimalInjection)])


def _install_wrk() -> None:
    print("wrk is missing: installing Debian's package (apt-get install -y wrk)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], env=env).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update"], env=env, check=True)
        subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], env=env, check=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(name: str, port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", f"served_middleware:{name}",
        "--app-dir", str(Path(__file__).resolve().parent),
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--workers", "1",
        "--no-access-log", "--log-level", "warning",
    ]
    return subprocess.Popen(command)


def _fetch(port: int) -> tuple[http.client.HTTPResponse, bytes]:
    deadline = time.monotonic() + 20
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            return response, response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            connection.close()


def _check(name: str, port: int) -> None:
    """Each app must do its job, or the comparison means nothing."""
    response, body = _fetch(port)
    policy = response.getheader("permissions-policy")
    injected = SCRIPT_URL.encode() in body
    expected = {"bare": (False, False), "header": (True, False), "header_script": (True, True),
                "header_by_app": (True, False), "minimal_injection": (True, True)}[name]
    if (policy is not None, injected) != expected or int(response.getheader("content-length", "-1")) != len(body):
        raise SystemExit(f"{name}: unexpected response (policy={policy!r}, injected={injected})")


def _cpu_seconds(pid: int) -> float:
    # /proc/<pid>/stat: utime and stime are the 14th and 15th fields, after "(comm)".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(server: subprocess.Popen[bytes], port: int, duration: int, connections: int) -> tuple[int, float, float]:
    """Requests served, seconds taken, and the server's CPU seconds."""
    cpu_before = _cpu_seconds(server.pid)
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", f"http://127.0.0.1:{port}/"],
        check=True, capture_output=True, text=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"wrk reported errors:\n{output}")
    cpu = _cpu_seconds(server.pid) - cpu_before
    count = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    if count is None:
        raise SystemExit(f"no request count in wrk's output:\n{output}")
    seconds = float(count.group(2)) / (1000 if count.group(3) == "ms" else 1)
    return int(count.group(1)), seconds, cpu


def _round(servers: dict[str, subprocess.Popen[bytes]], ports: dict[str, int], slices: int, seconds: int,
           connections: int) -> dict[str, tuple[float, float]]:
    """Each app's requests/s and CPU microseconds per request, the apps taking turns slice by slice."""
    apps = tuple(servers)
    requests = dict.fromkeys(apps, 0)
    elapsed = dict.fromkeys(apps, 0.0)
    cpu = dict.fromkeys(apps, 0.0)
    for index in range(slices):
        for name in apps[index % len(apps):] + apps[: index % len(apps)]:
            served, taken, used = _wrk(servers[name], ports[name], seconds, connections)
            requests[name] += served
            elapsed[name] += taken
            cpu[name] += used
    return {name: (requests[name] / elapsed[name], cpu[name] / requests[name] * 1e6) for name in apps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per app and round")
    parser.add_argument("--slice", type=int, default=2, help="seconds of one app's turn within a round")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load per app first")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--floors", action="store_true",
                        help="also serve the page with the header sent by the app itself, and a minimal injector")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        _install_wrk()

    apps = APPS + FLOORS if args.floors else APPS
    ports = {name: _free_port() for name in apps}
    servers = {name: _serve(name, port) for name, port in ports.items()}
    try:
        for name, port in ports.items():
            _check(name, port)
            _wrk(servers[name], port, args.warmup, args.connections)
        slices = max(1, args.duration // args.slice)
        rounds = [_round(servers, ports, slices, args.slice, args.connections) for _ in range(args.rounds)]
    finally:
        for server in servers.values():
            server.terminate()
        for server in servers.values():
            server.wait(timeout=10)

    print(f"page {len(PAGE)} bytes; uvicorn (uvloop, httptools, 1 worker) per app; wrk -t1 -c{args.connections}; "
          f"{args.rounds} rounds of {slices} x {args.slice} s per app, interleaved; {os.cpu_count()} CPUs")
    header_cells = "".join(f"{f'round {i + 1} req/s':>16} {'ratio':>6} {'cpu us/req':>10}" for i in range(len(rounds)))
    print(f"{'app':24}{header_cells} {'best ratio':>11}")
    for name in apps:
        ratios = [measured[name][0] / measured["bare"][0] for measured in rounds]
        cells = "".join(f"{measured[name][0]:16,.0f} {ratio:6.3f} {measured[name][1]:10.1f}"
                        for measured, ratio in zip(rounds, ratios, strict=True))
        print(f"{LABELS[name]:24}{cells} {max(ratios):11.3f}")


if __name__ == "__main__":
    main()
