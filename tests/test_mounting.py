"""The issuer app mounted inside a host application: plain Starlette and FastAPI.

The page, its JSON endpoints and the widget files must all answer under the
mount path, and every URL the page hands to the browser must include it. The
host runs the issuer's lifespan (Starlette runs no mounted app's lifespan), and
the handlers find the issuer's context on the issuer's own app.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from factories import ISSUER_ORIGIN, MERCHANT_ORIGIN, make_issuer
from fastapi import FastAPI
from payment_helpers import initialize
from softauthn import SoftAuthenticator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from spc_embed import ConfigurationError, Issuer

WIDGET = Path(__file__).resolve().parent.parent / "widget"


async def host_home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("the bank's own page")


def starlette_host(issuer: Issuer) -> Any:
    return Starlette(routes=[Route("/", host_home), Mount(issuer.mount_path, app=issuer.app)],
                     lifespan=issuer.lifespan)


def fastapi_host(issuer: Issuer) -> Any:
    app = FastAPI(lifespan=issuer.lifespan)

    @app.get("/")
    async def home() -> dict[str, str]:
        return {"page": "the bank's own page"}

    app.mount(issuer.mount_path, issuer.app)
    return app


HOSTS: dict[str, Callable[[Issuer], Any]] = {"starlette": starlette_host, "fastapi": fastapi_host}


@pytest.fixture(params=[("starlette", "/spc"), ("fastapi", "/spc"), ("starlette", "/payments/v1/spc"),
                        ("fastapi", "/payments/v1/spc")], ids=lambda p: f"{p[0]}:{p[1]}")
def mounted(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Issuer, TestClient]]:
    host, mount_path = request.param
    issuer = make_issuer(tmp_path / "issuer.db", mount_path=mount_path)
    with TestClient(HOSTS[host](issuer), base_url=ISSUER_ORIGIN) as client:
        yield issuer, client


def enrol_url(issuer: Issuer) -> str:
    return issuer.enrollment_url(
        user_id="cardholder-1", user_name="alex@example.com", user_display_name="Alex Doe",
        instrument_name="Test Card ****4242", instrument_icon=issuer.url("/widget/card.png"),
        merchant_origin=MERCHANT_ORIGIN,
    )


def local(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == ISSUER_ORIGIN, url
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_enrollment_url_includes_the_mount_path(mounted: tuple[Issuer, TestClient]) -> None:
    issuer, _ = mounted
    assert enrol_url(issuer).startswith(f"{ISSUER_ORIGIN}{issuer.mount_path}/enroll?token=")


def test_page_served_from_the_mount_with_mounted_urls(mounted: tuple[Issuer, TestClient]) -> None:
    issuer, client = mounted
    base = ISSUER_ORIGIN + issuer.mount_path

    response = client.get(local(enrol_url(issuer)))

    assert response.status_code == 200, response.text
    assert "frame-ancestors " + MERCHANT_ORIGIN in response.headers["content-security-policy"]
    config = json.loads(re.search(r'id="spc-enroll-config">(.*?)</script>', response.text, re.S).group(1))
    assert config["optionsUrl"] == base + "/enroll/options"
    assert config["verifyUrl"] == base + "/enroll/verify"
    # Every URL the page loads is under the mount and actually served there.
    urls = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    assert f"{base}/widget/enroll.js" in urls
    assert f"{base}/widget/spc-embed.css" in urls
    assert f"{base}/widget/card.png" in urls
    for url in urls:
        assert url.startswith(base + "/"), url
        assert client.get(local(url)).status_code == 200, url


@pytest.mark.parametrize("name, media_type", [
    ("enroll.js", "text/javascript"), ("webauthn-json.js", "text/javascript"), ("spc-embed.css", "text/css"),
    ("card.png", "image/png"),
])
def test_widget_files_served_from_the_mount(mounted: tuple[Issuer, TestClient], name: str, media_type: str) -> None:
    issuer, client = mounted

    response = client.get(f"{issuer.mount_path}/widget/{name}")

    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type
    assert response.content == (WIDGET / name).read_bytes()


def test_module_imports_resolve_next_to_the_module(mounted: tuple[Issuer, TestClient]) -> None:
    # enroll.js imports its helpers relative to its own URL, so they follow the mount.
    issuer, client = mounted
    source = (WIDGET / "enroll.js").read_text()
    for specifier in re.findall(r'^import .* from "([^"]+)";', source, re.M):
        assert specifier.startswith("./"), specifier
        assert client.get(f"{issuer.mount_path}/widget/{specifier[2:]}").status_code == 200


def test_enrolment_through_the_mount(mounted: tuple[Issuer, TestClient]) -> None:
    issuer, client = mounted
    token = enrol_url(issuer).split("token=", 1)[1]
    headers = {"Origin": ISSUER_ORIGIN}

    options = client.post(f"{issuer.mount_path}/enroll/options", json={"token": token}, headers=headers)
    assert options.status_code == 200, options.text
    options_json = options.json()
    credential = SoftAuthenticator().create(
        rp_id="issuer.test", challenge=options_json["challenge"], origin=ISSUER_ORIGIN,
        user_handle=base64.urlsafe_b64decode(options_json["user"]["id"] + "=="),
        cross_origin=True, top_origin=MERCHANT_ORIGIN,
    )
    verified = client.post(f"{issuer.mount_path}/enroll/verify", json={"token": token, "credential": credential},
                           headers=headers)

    assert verified.status_code == 200, verified.text
    assert verified.json()["outcome"] == "enrolled"


def test_host_routes_untouched(mounted: tuple[Issuer, TestClient]) -> None:
    # The issuer's headers and error format stay inside its mount.
    issuer, client = mounted

    home = client.get("/")
    assert home.status_code == 200
    assert "content-security-policy" not in home.headers
    inside_404 = client.get(f"{issuer.mount_path}/nowhere")
    assert inside_404.status_code == 404
    assert inside_404.json()["code"] == "not_found"
    assert inside_404.headers["content-security-policy"] == "frame-ancestors 'none'"


def test_error_responses_keep_their_shape_under_the_mount(mounted: tuple[Issuer, TestClient]) -> None:
    issuer, client = mounted

    response = client.post(f"{issuer.mount_path}/enroll/options", json={"token": "x"},
                           headers={"Origin": MERCHANT_ORIGIN})

    assert response.status_code == 403
    assert response.json()["code"] == "origin_not_allowed"


@pytest.mark.parametrize("mount_path", ["spc", "/spc/", "spc/"])
def test_mount_path_must_be_absolute_without_trailing_slash(tmp_path: Path, mount_path: str) -> None:
    with pytest.raises(ConfigurationError, match="mount_path"):
        make_issuer(tmp_path / "issuer.db", mount_path=mount_path)


def test_unmounted_app_serves_at_the_root(tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path / "issuer.db")
    with TestClient(issuer.app, base_url=ISSUER_ORIGIN) as client:
        url = enrol_url(issuer)
        assert url.startswith(ISSUER_ORIGIN + "/enroll?token=")
        response = client.get(local(url))
    assert response.status_code == 200
    assert f'src="{ISSUER_ORIGIN}/widget/enroll.js"' in response.text


# The lifespan and the context


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_the_hosts_lifespan_opens_and_closes_the_store(tmp_path: Path, host: str) -> None:
    issuer = make_issuer(tmp_path / "issuer.db", mount_path="/spc")
    assert not issuer.store.is_open
    with TestClient(HOSTS[host](issuer), base_url=ISSUER_ORIGIN) as client:
        assert issuer.store.is_open
        assert initialize(client, prefix="/spc").status_code == 200
    assert not issuer.store.is_open


def test_the_host_and_the_issuer_app_may_both_run_the_lifespan(tmp_path: Path) -> None:
    # issuer.app has the same lifespan, for when it is served on its own; the store counts its openings.
    issuer = make_issuer(tmp_path / "issuer.db", mount_path="/spc")
    with TestClient(starlette_host(issuer), base_url=ISSUER_ORIGIN) as host_client:
        with TestClient(issuer.app, base_url=ISSUER_ORIGIN) as direct:
            assert initialize(direct, transaction_id="direct").status_code == 200
        assert issuer.store.is_open
        assert initialize(host_client, prefix="/spc", transaction_id="mounted").status_code == 200
    assert not issuer.store.is_open


def _host_without_lifespan(host: str, mount_path: str, mounted: Any) -> Any:
    if host == "starlette":
        return Starlette(routes=[Mount(mount_path, app=mounted)])
    app = FastAPI()
    app.mount(mount_path, mounted)
    return app


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_a_host_that_forgets_the_lifespan_gets_503_not_500(tmp_path: Path, host: str) -> None:
    issuer = make_issuer(tmp_path / "issuer.db", mount_path="/spc")
    # TestClient re-raises what reaches Starlette's ServerErrorMiddleware (a 500): a 503 here was answered
    # by an ordinary exception handler, which leaves the connection open.
    with TestClient(_host_without_lifespan(host, issuer.mount_path, issuer.app), base_url=ISSUER_ORIGIN) as client:
        response = initialize(client, prefix="/spc")
    assert response.status_code == 503
    assert response.json()["code"] == "storage_unavailable"
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_request_app_is_the_innermost_app(host: str) -> None:
    # What issuer_context() relies on: Starlette sets scope["app"] to each application a request
    # passes through, so behind a Mount request.app is the mounted app, not the host.
    async def probe(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.app.state.name)

    inner = Starlette(routes=[Route("/probe", probe)])
    inner.state.name = "inner"
    outer = _host_without_lifespan(host, "/sub", inner)
    outer.state.name = "outer"
    with TestClient(outer) as client:
        assert client.get("/sub/probe").text == "inner"


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_two_issuers_in_one_host_each_answer_with_their_own_context(tmp_path: Path, host: str) -> None:
    first = make_issuer(tmp_path / "a.db", mount_path="/a", rp_name="Bank A")
    second = make_issuer(tmp_path / "b.db", mount_path="/b", rp_name="Bank B")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with first.lifespan(app), second.lifespan(app):
            yield

    if host == "starlette":
        app: Any = Starlette(routes=[Mount("/a", app=first.app), Mount("/b", app=second.app)], lifespan=lifespan)
    else:
        app = FastAPI(lifespan=lifespan)
        app.mount("/a", first.app)
        app.mount("/b", second.app)
    with TestClient(app, base_url=ISSUER_ORIGIN) as client:
        for issuer, name in ((first, "Bank A"), (second, "Bank B")):
            document = client.get(issuer.mount_path + "/openapi.json").json()
            assert document["info"]["title"].startswith(name + ":")
            assert document["servers"] == [{"url": ISSUER_ORIGIN + issuer.mount_path}]
            initialized = initialize(client, prefix=issuer.mount_path, transaction_id=f"order-{name}")
            assert initialized.json()["fallback_url"].startswith(f"{ISSUER_ORIGIN}{issuer.mount_path}/pay?handle=")
        assert client.portal.call(first.store.get_transaction, "merchant", "order-Bank A") is not None
        assert client.portal.call(first.store.get_transaction, "merchant", "order-Bank B") is None
