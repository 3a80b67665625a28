"""The demo shop: a merchant whose checkout embeds the bank's enrolment iframe.

The shop knows nothing of WebAuthn. It delegates the SPC features to the bank
(spc_embed's merchant middleware sets the Permissions-Policy header; the
iframe helper writes the matching ``allow`` attribute) and listens for the
bank's postMessage outcome (static/shop.js).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from spc_embed.merchant import SPCMerchantMiddleware, issuer_iframe

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")

ORDER = {"item": "Espresso beans, 250 g", "quantity": 1, "total": "12.50", "currency": "EUR"}


def create_shop(*, origin: str, bank_origin: str, enrollment_url: Callable[[str], str]) -> Starlette:
    """``enrollment_url(merchant_origin)`` asks the cardholder's bank for an enrolment iframe URL.

    In the demo both live in one process, so it is a plain function call into
    the bank. In production it is a server-to-server call to the bank (or its
    3-D Secure ACS), or the bank's own step-up page hands the URL over after
    it has authenticated the cardholder.
    """

    async def home(request: Request) -> Response:
        return templates.TemplateResponse(request, "shop/home.html", {"order": ORDER})

    async def checkout(request: Request) -> Response:
        # A fresh, single-use enrolment link on every visit.
        src = enrollment_url(origin)
        return templates.TemplateResponse(request, "shop/checkout.html", {
            "order": ORDER,
            "enrollment_iframe": issuer_iframe(src, title="Set up faster checkout with your bank",
                                               id="spc-enroll-frame", height=400),
            "shop_config": {"bankOrigin": bank_origin},
        })

    return Starlette(
        routes=[
            Route("/", home),
            Route("/checkout", checkout),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(SPCMerchantMiddleware, issuer_origins=[bank_origin])],
    )
