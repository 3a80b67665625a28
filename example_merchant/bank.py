"""The demo bank: an issuer with spc_embed mounted at /spc, its own step-up page and a home page.

What the bank does for the shop, in the order the demo meets it:

1. ``POST /api/step-ups`` (server to server, the shop's API key): the shop asks
   the bank to authenticate the cardholder for one transaction the bank's own
   way. This stands in for a 3-D Secure challenge: the answer is the URL of
   the bank's step-up page, which the shop shows in an iframe.
2. ``GET``/``POST /step-up/{id}``: that page. It shows the transaction and asks
   for a one-time code. The demo shows the code on screen; a real bank sends it
   by SMS or asks in its app. The page tells the shop's page the outcome with
   ``postMessage`` to the shop's exact origin, and nothing more: the shop
   learns the result from the bank's backend (3).
3. ``GET /api/step-ups/{id}`` (server to server): the result. Once the
   cardholder has passed, the bank mints an spc_embed enrolment link for the
   shop's origin and hands it over here, so the shop can offer "faster
   checkout next time" in the enrolment iframe. Minting only after the bank's
   own authentication is the rule: the link lets whoever holds it register a
   passkey for this cardholder.
4. ``/spc/...``: spc_embed itself (enrolment iframe, transaction API, fallback
   iframe, JWKS, the merchant script), mounted as the README shows.

And on its own site, the bank is a tenant of its own issuer (a first-party
tenant, ``demo-bank``): the home page's "Move money" confirms a transfer with
the cardholder's passkey the way the Hanko Passkey API's "Example payment
transaction" does. ``POST /api/transfers`` (the bank's backend) calls
``/spc/transaction/initialize`` with the bank's own key and
``{"amount": 123.45, "usedFor": ...}``; the page runs
``navigator.credentials.get()`` with the answer's ``publicKey``; and
``POST /api/transfers/confirm`` sends the credential as-is to
``/spc/transaction/finalize`` and checks the token (``trans.method`` is
``"passkey"``: the bank's page, not the browser, showed the amount).

Everything secret here is generated at start-up and lives only in memory, and
step-ups are kept in a dict: fine for a demo, never for a real issuer
(configure ``IssuerConfig`` from the environment and keep state in a database).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from spc_embed import InvalidRequest, Issuer, IssuerConfig, Merchant
from spc_embed.encoding import b64url_decode, b64url_encode
from spc_embed.headers import frame_ancestors

HERE = Path(__file__).resolve().parent


async def favicon(request: Request) -> Response:
    """Browsers ask every site for /favicon.ico; the pages also name this icon in a <link rel="icon">."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


MOUNT_PATH = "/spc"
SHOP_ID = "demo-shop"
BANK_TENANT_ID = "demo-bank"  # the bank's own site, a tenant of its own issuer
TRANSFER = {"amount": 123.45, "usedFor": "Transfer to your savings account"}  # a JSON number, as Hanko's example
DEMO_ONE_TIME_CODE = "123456"
STEP_UP_TTL = 600
STEP_UP_ATTEMPTS = 3
templates = Jinja2Templates(directory=HERE / "templates")


@dataclass(frozen=True)
class DemoSecrets:
    """DEMO ONLY: throwaway keys made at start-up, so the demo needs no set-up."""

    secret_key: str = field(repr=False)
    signing_key_pem: str = field(repr=False)
    shop_api_key: str = field(repr=False)
    shop_session_key: str = field(repr=False, default_factory=lambda: secrets.token_urlsafe(32))
    bank_site_api_key: str = field(repr=False, default_factory=lambda: secrets.token_urlsafe(32))

    @classmethod
    def generate(cls) -> DemoSecrets:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        return cls(secret_key=secrets.token_urlsafe(48), signing_key_pem=pem,
                   shop_api_key=secrets.token_urlsafe(32), shop_session_key=secrets.token_urlsafe(32))


@dataclass(frozen=True)
class DemoCardholder:
    """The one customer of the demo bank; a real bank knows who is logged in."""

    user_id: str = "demo-cardholder-1"
    user_name: str = "alex@example.com"
    display_name: str = "Alex Doe"
    card_name: str = "Demo Bank Visa ····4242"


@dataclass
class StepUp:
    """One run of the bank's own authentication for one transaction (a 3-D Secure challenge, simplified)."""

    id: str
    tenant_id: str
    merchant_origin: str
    user_id: str
    transaction_id: str
    amount: str
    currency: str
    payee_name: str
    created_at: float
    status: str = "pending"  # -> "passed" | "failed"
    attempts: int = 0
    enrollment_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "transaction_id": self.transaction_id,
                "amount": self.amount, "currency": self.currency, "enrollment_url": self.enrollment_url}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Bank:
    """The issuer's side of the demo: configuration, the mounted spc_embed app, pages."""

    def __init__(self, *, origin: str, shop_origin: str, data_dir: Path, demo_secrets: DemoSecrets,
                 cardholder: DemoCardholder | None = None, clock: Callable[[], float] = time.time) -> None:
        self.origin = origin
        self.shop_origin = shop_origin
        self.cardholder = cardholder or DemoCardholder()
        self.clock = clock
        self._shop_api_key = demo_secrets.shop_api_key
        self.step_ups: dict[str, StepUp] = {}
        config = IssuerConfig(
            # The RP id is the bank's host: "localhost" in the plain-HTTP demo, "issuer.test" with --https.
            rp_id=urlsplit(origin).hostname or "",
            rp_name="Demo Bank",
            origin=origin,
            secret_keys=(demo_secrets.secret_key,),
            signing_keys=(demo_secrets.signing_key_pem,),
            merchants=(
                Merchant(id=SHOP_ID, name="Demo Shop", origins=(shop_origin,), api_keys=(demo_secrets.shop_api_key,)),
                # The bank's own pages: its transfers are confirmed with a plain passkey on this origin.
                Merchant(id=BANK_TENANT_ID, name="Demo Bank", origins=(origin,),
                         api_keys=(demo_secrets.bank_site_api_key,), default_currency="EUR"),
            ),
            database_url=f"sqlite:///{Path(data_dir) / 'bank.db'}",
        )
        self.issuer = Issuer(config, mount_path=MOUNT_PATH, clock=clock)
        self._bank_site_api_key = demo_secrets.bank_site_api_key
        self.app = Starlette(routes=[
            Route("/", self.home),
            Route("/api/transfers", self.start_transfer, methods=["POST"]),
            Route("/api/transfers/confirm", self.confirm_transfer, methods=["POST"]),
            Route("/devices/{credential_id}/remove", self.remove_device, methods=["POST"]),
            Route("/api/step-ups", self.create_step_up, methods=["POST"]),
            Route("/api/step-ups/{step_up_id}", self.step_up_result, methods=["GET"]),
            Route("/step-up/{step_up_id}", self.step_up_page, methods=["GET", "POST"]),
            Mount(MOUNT_PATH, app=self.issuer.app),
            Route("/favicon.ico", favicon),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ], lifespan=self.issuer.lifespan)  # Starlette runs no mounted app's lifespan: the bank runs the issuer's

    @property
    def card_icon_url(self) -> str:
        # The demo card's own art (a Visa, as its name says), not the package's generic card.
        return f"{self.origin}/static/card.png"

    @property
    def api_url(self) -> str:
        """Where the transaction API answers: the issuer origin plus the mount path."""
        return self.issuer.base_url

    def enrollment_url(self, merchant_origin: str) -> str:
        """The enrolment iframe URL for the demo cardholder on ``merchant_origin``.

        Call it only after the bank has authenticated the cardholder itself:
        here, when a step-up has passed.
        """
        return self.issuer.enrollment_url(
            user_id=self.cardholder.user_id,
            user_name=self.cardholder.user_name,
            user_display_name=self.cardholder.display_name,
            instrument_name=self.cardholder.card_name,
            instrument_icon=self.card_icon_url,
            merchant_origin=merchant_origin,
        )

    # Server to server, for the shop

    def _shop_key(self, request: Request) -> bool:
        presented = request.headers.get("apikey") or ""
        return hmac.compare_digest(presented.encode(), self._shop_api_key.encode())

    async def create_step_up(self, request: Request) -> Response:
        if not self._shop_key(request):
            return _error(401, "invalid_api_key", "a valid API key is required (apiKey header)")
        try:
            body = await request.json()
            fields = {name: body[name] for name in ("user_id", "transaction_id", "amount", "currency", "payee_name")}
        except (ValueError, KeyError, TypeError):
            return _error(400, "invalid_request", "send {user_id, transaction_id, amount, currency, payee_name}")
        if not all(isinstance(value, str) and 0 < len(value) <= 200 for value in fields.values()):
            return _error(400, "invalid_request", "every field must be a short string")
        if fields["user_id"] != self.cardholder.user_id:
            return _error(404, "unknown_cardholder", "the demo bank has one cardholder")
        step_up = StepUp(id=secrets.token_urlsafe(16), tenant_id=SHOP_ID, merchant_origin=self.shop_origin,
                         created_at=self.clock(), **fields)
        self.step_ups[step_up.id] = step_up
        return JSONResponse({**step_up.to_json(), "url": f"{self.origin}/step-up/{step_up.id}"}, status_code=201)

    async def step_up_result(self, request: Request) -> Response:
        if not self._shop_key(request):
            return _error(401, "invalid_api_key", "a valid API key is required (apiKey header)")
        step_up = self.step_ups.get(request.path_params["step_up_id"])
        if step_up is None:
            return _error(404, "step_up_not_found", "no such step-up")
        return JSONResponse(step_up.to_json())

    # The step-up page, in an iframe on the shop's checkout

    async def step_up_page(self, request: Request) -> Response:
        step_up = self.step_ups.get(request.path_params["step_up_id"])
        if step_up is None:
            raise HTTPException(404, "no such step-up")
        error = None
        if step_up.status == "pending" and self.clock() > step_up.created_at + STEP_UP_TTL:
            step_up.status = "failed"
        if request.method == "POST" and request.headers.get("origin") != self.origin:
            # Only the bank's own page posts the code (its Referrer-Policy lets the browser say so).
            raise HTTPException(403, "cross-origin form post")
        if request.method == "POST" and step_up.status == "pending":
            form = parse_qs((await request.body()).decode("utf-8", "replace")[:1024])
            code = form.get("code", [""])[0].strip()
            step_up.attempts += 1
            if hmac.compare_digest(code.encode(), DEMO_ONE_TIME_CODE.encode()):
                step_up.status = "passed"
                # The bank has authenticated the cardholder: now, and only now, it may offer enrolment.
                step_up.enrollment_url = self.enrollment_url(step_up.merchant_origin)
            elif step_up.attempts >= STEP_UP_ATTEMPTS:
                step_up.status = "failed"
            else:
                left = STEP_UP_ATTEMPTS - step_up.attempts
                error = f"That code is not right. {left} {'attempt' if left == 1 else 'attempts'} left."
        response = templates.TemplateResponse(request, "bank/step_up.html", {
            "step_up": step_up,
            "cardholder": self.cardholder,
            "card_icon_url": self.card_icon_url,
            "demo_code": DEMO_ONE_TIME_CODE,
            "error": error,
            "report": {"source": "demo-bank", "type": "step-up", "stepUpId": step_up.id,
                       "outcome": step_up.status, "targetOrigin": step_up.merchant_origin},
        })
        # Framable by the shop that asked for it, and by nobody else; no inline code.
        response.headers["Content-Security-Policy"] = "; ".join((
            "default-src 'self'", "img-src 'self' https: data:", "form-action 'self'", "base-uri 'none'",
            frame_ancestors([step_up.merchant_origin]),
        ))
        # Not no-referrer: under it the form's POST would carry `Origin: null`, and the check above needs the origin.
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    # The bank's own pages

    async def _issuer_api(self, path: str, body: Any) -> httpx.Response:
        """A call to the transaction API with the bank site's own key, as any tenant backend makes it.

        In process (the issuer is mounted in this very app, so its own app answers the paths below the
        mount), but through the API all the same.
        """
        transport = httpx.ASGITransport(app=self.issuer.app)
        async with httpx.AsyncClient(transport=transport, base_url=self.origin) as client:
            return await client.post(path, json=body, headers={"apiKey": self._bank_site_api_key})

    async def start_transfer(self, request: Request) -> Response:
        # A real bank takes the amount and payee from the form, within its own session and limits.
        answer = await self._issuer_api("/transaction/initialize", {
            "user_id": self.cardholder.user_id, "transaction_id": f"transfer-{secrets.token_hex(6)}",
            "transaction_data": TRANSFER,
        })
        return JSONResponse(answer.json(), status_code=answer.status_code)

    async def confirm_transfer(self, request: Request) -> Response:
        try:
            credential = await request.json()
        except ValueError:
            return _error(400, "invalid_request", "send the credential from navigator.credentials.get()")
        answer = await self._issuer_api("/transaction/finalize", credential)  # as-is, as Hanko's example
        if not answer.is_success:
            return JSONResponse(answer.json(), status_code=answer.status_code)
        claims = self.issuer.result_signer.verify(answer.json()["token"], audience=BANK_TENANT_ID)
        return JSONResponse({"outcome": "confirmed", "transaction_id": claims["trans"]["id"],
                             "method": claims["trans"]["method"]})

    async def home(self, request: Request) -> Response:
        store = self.issuer.store
        credentials = await store.list_credentials(self.cardholder.user_id)
        records = await store.list_transactions(self.cardholder.user_id)
        step_ups = {(s.tenant_id, s.transaction_id): s for s in self.step_ups.values()}
        merchants = {m.id: m.name or m.id for m in self.issuer.config.merchants}
        transactions = []
        for record in records:
            step_up = step_ups.get((record.tenant_id, record.transaction_id))
            if record.state == "succeeded":
                how = {"spc": "Secure Payment Confirmation", "fallback": "this device, in the bank's frame",
                       "passkey": "this device, on the bank's site"}.get(record.method or "", record.method or "")
                status = "confirmed"
            elif step_up is not None and step_up.status == "passed":
                how, status = "one-time code", "confirmed"
            elif step_up is not None:
                how, status = "one-time code", step_up.status
            else:
                how, status = "", {"failed": "opted out"}.get(record.state, record.state)
            transactions.append({
                # The amount as it was shown: the data's spelling, in its currency or the tenant's default.
                "id": record.transaction_id, "when": _when(record.created_at), "merchant": merchants.get(
                    record.tenant_id, record.tenant_id), "amount": f"{record.expected.get('amount')} "
                f"{record.expected.get('currency')}", "how": how, "status": status,
            })
        devices = [
            {"id": b64url_encode(c.credential_id), "origin": c.enrolled_origin, "created": _when(c.created_at),
             "last_used": _when(c.last_used_at) or "not used yet", "instrument": c.instrument_name}
            for c in credentials
        ]
        return templates.TemplateResponse(request, "bank/home.html", {
            "cardholder": self.cardholder,
            "devices": devices,
            "transactions": transactions,
            "card_icon_url": self.card_icon_url,
            "spc_url": self.issuer.base_url,
            "transfer": TRANSFER,
        })

    async def remove_device(self, request: Request) -> Response:
        # A real bank checks its own session (and CSRF token) here; the demo bank trusts everyone.
        try:
            credential_id = b64url_decode(request.path_params["credential_id"], field="credential id")
        except InvalidRequest:
            raise HTTPException(404) from None
        await self.issuer.store.revoke_credential(self.cardholder.user_id, credential_id)
        return RedirectResponse("/#devices", status_code=303)


def create_bank(*, origin: str, shop_origin: str, data_dir: Path,
                demo_secrets: DemoSecrets | None = None) -> Bank:
    return Bank(origin=origin, shop_origin=shop_origin, data_dir=data_dir,
                demo_secrets=demo_secrets or DemoSecrets.generate())
