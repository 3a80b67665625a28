"""The demo shop: a merchant that adds SPC to its checkout with spc_embed's merchant kit.

The shop knows nothing of WebAuthn. What it does:

- its pages delegate ``payment`` and the WebAuthn features to the bank
  (``SPCMerchantMiddleware`` writes the ``Permissions-Policy`` header);
- its backend talks to the bank server to server with its API key, over the
  network with httpx, as any merchant backend would: ``/transaction/initialize``
  when the customer clicks Pay, ``/transaction/finalize`` with the browser's
  credential, and the bank's own step-up API;
- its checkout page runs ``spc-merchant.js`` (served by the bank) and falls
  back to the bank's iframes (static/checkout.js);
- it fulfils an order only after verifying the bank's signed result (a JWT) with
  PyJWT against the bank's JWKS: signature, ``iss``, ``aud`` (this shop's id
  at the bank), ``exp``, and ``trans.id``/``trans.hash`` (this order).

Orders live in a dict and the cart in a signed cookie: demo choices.
"""

from __future__ import annotations

import contextlib
import secrets
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from spc_embed.merchant import SPCMerchantMiddleware

HERE = Path(__file__).resolve().parent


async def favicon(request: Request) -> Response:
    """Browsers ask every site for /favicon.ico; the pages also name this icon in a <link rel="icon">."""
    return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


templates = Jinja2Templates(directory=HERE / "templates")

CURRENCY = "EUR"
SHOP_NAME = "Demo Shop"
SPC_MOUNT = "/spc"
RESULT_CLAIMS = ["iss", "sub", "aud", "iat", "exp", "jti", "cred", "trans"]


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price: str
    blurb: str


PRODUCTS = {p.sku: p for p in (
    Product("beans", "Espresso beans, 250 g", "12.50", "Dark roast from a small farm in Huila."),
    Product("cup", "Ceramic cup", "9.00", "Hand-glazed, holds a double espresso."),
    Product("grinder", "Hand grinder", "49.00", "Steel burrs, 40 settings."),
)}


class ShopError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Order:
    id: str
    items: list[dict[str, Any]]
    total: str
    created_at: float
    status: str = "pending"  # -> "paid"
    method: str | None = None  # "spc", "fallback" or "one-time code"
    transaction_hash: str | None = None
    step_up_id: str | None = None
    claims: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "items": self.items, "total": self.total, "currency": CURRENCY,
                "status": self.status, "method": self.method}


@dataclass(frozen=True)
class BankConnection:
    """How the shop's backend reaches the bank, and what it expects of the bank's results.

    ``origin`` is the bank as browsers see it (the result token's ``iss`` is
    ``origin + "/spc"``); ``api_origin`` the same server as this backend
    reaches it. They differ only in the ``--https`` demo, where the ``.test``
    names resolve inside the browser alone.
    """

    origin: str
    api_origin: str
    api_key: str = field(repr=False)
    merchant_id: str  # this shop's tenant id at the bank: the token's ``aud``
    user_id: str  # the bank's reference for the card on file; a real shop sends the card to its 3DS server
    card_name: str
    verify: ssl.SSLContext | bool = True

    @property
    def spc_url(self) -> str:
        """Where spc_embed is mounted, as browsers see it."""
        return self.origin + SPC_MOUNT


class BankClient:
    """The shop backend's server-to-server client for the bank, and the result-token verifier."""

    def __init__(self, connection: BankConnection, client: httpx.AsyncClient) -> None:
        self.connection = connection
        self.client = client
        self._keys: dict[str, jwt.PyJWK] = {}

    @property
    def jwks_url(self) -> str:
        return self.connection.spc_url + "/.well-known/jwks.json"

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        url = self.connection.api_origin + path
        try:
            response = await self.client.request(method, url, json=body,
                                                 headers={"apiKey": self.connection.api_key})
        except httpx.HTTPError as exc:
            raise ShopError(502, "bank_unreachable", f"the bank could not be reached ({exc})") from exc
        data = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.is_error:
            raise ShopError(502 if response.status_code >= 500 else 400, data.get("code", "bank_error"),
                            f"the bank said: {data.get('message', response.status_code)}")
        return data

    async def initialize(self, order: Order, transaction_data: dict[str, Any]) -> dict[str, Any]:
        return await self.call("POST", SPC_MOUNT + "/transaction/initialize", {
            "user_id": self.connection.user_id, "transaction_id": order.id,
            "transaction_data": transaction_data, "show_opt_out": True,
        })

    async def finalize(self, order: Order, credential: Any) -> str:
        answer = await self.call("POST", SPC_MOUNT + "/transaction/finalize",
                                 {"transaction_id": order.id, "credential": credential})
        return answer["token"]

    async def signing_key(self, kid: str) -> jwt.PyJWK:
        if kid not in self._keys:
            # An unknown kid: the bank may have rotated its keys, so fetch the JWKS again.
            try:
                response = await self.client.get(self.connection.api_origin + SPC_MOUNT + "/.well-known/jwks.json")
                response.raise_for_status()
                self._keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(response.json()).keys if key.key_id}
            except (httpx.HTTPError, jwt.PyJWTError) as exc:
                raise ShopError(502, "jwks_unavailable", f"the bank's keys could not be loaded ({exc})") from exc
        if kid not in self._keys:
            raise ShopError(400, "invalid_result_token", f"the token names an unknown key {kid!r}")
        return self._keys[kid]

    async def verify_result(self, token: str, order: Order) -> dict[str, Any]:
        """Everything a merchant checks before fulfilling: signature, iss, aud, exp, and this order."""
        try:
            header = jwt.get_unverified_header(token)
            key = await self.signing_key(str(header.get("kid")))
            claims = jwt.decode(token, key=key, algorithms=["ES256"], audience=self.connection.merchant_id,
                                issuer=self.connection.spc_url, options={"require": RESULT_CLAIMS})
        except jwt.PyJWTError as exc:
            raise ShopError(400, "invalid_result_token", f"the bank's result did not verify: {exc}") from exc
        trans = claims.get("trans")
        if not isinstance(trans, dict) or trans.get("id") != order.id:
            raise ShopError(400, "invalid_result_token", "the result is for another transaction")
        if trans.get("hash") != order.transaction_hash:
            raise ShopError(400, "invalid_result_token", "the result confirms other transaction data")
        return claims

    async def create_step_up(self, order: Order) -> dict[str, Any]:
        return await self.call("POST", "/api/step-ups", {
            "user_id": self.connection.user_id, "transaction_id": order.id, "amount": order.total,
            "currency": CURRENCY, "payee_name": SHOP_NAME,
        })

    async def step_up(self, step_up_id: str) -> dict[str, Any]:
        return await self.call("GET", f"/api/step-ups/{step_up_id}")


async def url_encoded_form(request: Request) -> dict[str, str]:
    """A small form's fields (Starlette's request.form() would need python-multipart)."""
    body = await request.body()
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")[:4096]).items()}


def cart_lines(cart: dict[str, int]) -> tuple[list[dict[str, Any]], str]:
    lines, total = [], Decimal("0.00")
    for sku, quantity in cart.items():
        product = PRODUCTS.get(sku)
        if product is None or not isinstance(quantity, int) or quantity < 1:
            continue
        line_total = Decimal(product.price) * quantity
        total += line_total
        lines.append({"sku": sku, "name": product.name, "quantity": quantity, "price": product.price,
                      "line_total": f"{line_total:.2f}"})
    return lines, f"{total:.2f}"


def create_shop(*, origin: str, bank: BankConnection, session_key: str) -> Starlette:
    """The shop's ASGI app. ``bank`` says where the bank is and how to authenticate to it."""
    https = origin.startswith("https://")
    orders: dict[str, Order] = {}
    merchant_script = bank.spc_url + "/widget/spc-merchant.js"

    def cart_of(request: Request) -> dict[str, int]:
        cart = request.session.get("cart")
        return cart if isinstance(cart, dict) else {}

    def page(request: Request, name: str, **context: Any) -> Response:
        lines, _ = cart_lines(cart_of(request))
        return templates.TemplateResponse(request, name, {
            "shop_name": SHOP_NAME, "currency": CURRENCY, "cart_count": sum(line["quantity"] for line in lines),
            **context,
        })

    async def home(request: Request) -> Response:
        return page(request, "shop/home.html", products=list(PRODUCTS.values()))

    async def cart(request: Request) -> Response:
        if request.method == "POST":
            form = await url_encoded_form(request)
            sku, action = form.get("sku", ""), form.get("action", "add")
            items = dict(cart_of(request))
            if sku in PRODUCTS and action == "add":
                items[sku] = min(items.get(sku, 0) + 1, 9)
            elif action == "remove":
                items.pop(sku, None)
            request.session["cart"] = items
            return RedirectResponse("/cart", status_code=303)
        lines, total = cart_lines(cart_of(request))
        return page(request, "shop/cart.html", lines=lines, total=total)

    async def checkout(request: Request) -> Response:
        lines, total = cart_lines(cart_of(request))
        return page(request, "shop/checkout.html", lines=lines, total=total, card_name=bank.card_name,
                    shop_config={"bankOrigin": bank.origin, "merchantScript": merchant_script,
                                 "optOutUrl": bank.spc_url + "/transaction/opt-out"})

    async def order_list(request: Request) -> Response:
        mine = [orders[i] for i in request.session.get("orders", []) if i in orders]
        return page(request, "shop/orders.html", orders=[o for o in reversed(mine) if o.status == "paid"])

    # The checkout's JSON API (same origin only: it wants a JSON body, which a cross-site form cannot send)

    async def json_body(request: Request) -> dict[str, Any]:
        if request.headers.get("origin") not in (None, origin):
            raise ShopError(403, "cross_origin", "this API is for the shop's own pages")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise ShopError(415, "json_required", "send application/json")
        try:
            body = await request.json()
        except ValueError:
            raise ShopError(400, "invalid_json", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise ShopError(400, "invalid_json", "the body must be a JSON object")
        return body

    def my_order(request: Request) -> Order:
        order_id = request.path_params["order_id"]
        if order_id not in request.session.get("orders", []) or order_id not in orders:
            raise ShopError(404, "order_not_found", "no such order")
        order = orders[order_id]
        if order.status == "paid":
            raise ShopError(409, "order_already_paid", "this order is already paid")
        return order

    def paid(request: Request, order: Order, method: str, claims: dict[str, Any] | None) -> dict[str, Any]:
        order.status, order.method, order.claims = "paid", method, claims
        request.session["cart"] = {}
        return {"order": order.to_json(), "claims": claims, "jwks_url": the_bank(request).jwks_url}

    def the_bank(request: Request) -> BankClient:
        return request.app.state.bank

    async def start_checkout(request: Request) -> Response:
        await json_body(request)
        lines, total = cart_lines(cart_of(request))
        if not lines:
            raise ShopError(400, "empty_cart", "the cart is empty")
        order = Order(id=f"order-{secrets.token_hex(6)}", items=lines, total=total, created_at=time.time())
        transaction_data: dict[str, Any] = {
            "amount": total, "currency": CURRENCY, "payee_name": SHOP_NAME,
            "order": {"id": order.id, "items": [
                {"sku": line["sku"], "quantity": line["quantity"], "price": line["price"]} for line in lines]},
        }
        if https:
            # SPC shows and signs the payee origin; PaymentRequest accepts only https origins there.
            transaction_data["payee_origin"] = origin
        init = await the_bank(request).initialize(order, transaction_data)
        order.transaction_hash = init["transaction_hash"]
        orders[order.id] = order
        request.session["orders"] = [*request.session.get("orders", [])[-19:], order.id]
        return JSONResponse({"order": order.to_json(), "init": init})

    async def confirm(request: Request) -> Response:
        """SPC said "confirmed": the browser's credential goes to the bank, the bank's token is verified."""
        order = my_order(request)
        body = await json_body(request)
        bank_client = the_bank(request)
        token = await bank_client.finalize(order, body.get("credential"))
        claims = await bank_client.verify_result(token, order)
        return JSONResponse(paid(request, order, "spc", claims))

    async def fallback_token(request: Request) -> Response:
        """The bank's fallback iframe handed the page a token: verify it like any other."""
        order = my_order(request)
        body = await json_body(request)
        token = body.get("token")
        if not isinstance(token, str):
            raise ShopError(400, "invalid_result_token", "send {token}")
        claims = await the_bank(request).verify_result(token, order)
        return JSONResponse(paid(request, order, claims["trans"].get("method", "fallback"), claims))

    async def start_step_up(request: Request) -> Response:
        order = my_order(request)
        await json_body(request)
        step_up = await the_bank(request).create_step_up(order)
        order.step_up_id = step_up["id"]
        return JSONResponse({"url": step_up["url"]})

    async def step_up_result(request: Request) -> Response:
        order = my_order(request)
        await json_body(request)
        if order.step_up_id is None:
            raise ShopError(409, "no_step_up", "no step-up was started for this order")
        result = await the_bank(request).step_up(order.step_up_id)
        if result.get("status") != "passed" or result.get("transaction_id") != order.id:
            raise ShopError(402, "step_up_failed", "your bank did not approve this payment")
        return JSONResponse({**paid(request, order, "one-time code", None),
                             "enrollment_url": result.get("enrollment_url")})

    def api(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ShopError as exc:
                return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

        return endpoint

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(verify=bank.verify, timeout=10) as client:
            app.state.bank = BankClient(bank, client)
            yield

    return Starlette(
        routes=[
            Route("/", home),
            Route("/cart", cart, methods=["GET", "POST"]),
            Route("/checkout", checkout),
            Route("/orders", order_list),
            Route("/api/checkout", api(start_checkout), methods=["POST"]),
            Route("/api/orders/{order_id}/confirm", api(confirm), methods=["POST"]),
            Route("/api/orders/{order_id}/token", api(fallback_token), methods=["POST"]),
            Route("/api/orders/{order_id}/step-up", api(start_step_up), methods=["POST"]),
            Route("/api/orders/{order_id}/step-up/result", api(step_up_result), methods=["POST"]),
            Route("/favicon.ico", favicon),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(SessionMiddleware, secret_key=session_key, session_cookie="demo_shop", https_only=https),
            # The one line that makes the bank's iframes and SPC work on these pages.
            Middleware(SPCMerchantMiddleware, issuer_origins=[bank.origin]),
        ],
        lifespan=lifespan,
    )
