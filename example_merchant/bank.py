"""The demo bank: an issuer with spc_embed mounted at /spc and a small home page.

Everything secret here is generated at start-up and lives only in memory:
fine for a demo, never for a real issuer (configure ``IssuerConfig`` from the
environment instead, see the README).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from spc_embed import Issuer, IssuerConfig, Merchant

HERE = Path(__file__).resolve().parent
MOUNT_PATH = "/spc"
templates = Jinja2Templates(directory=HERE / "templates")


@dataclass(frozen=True)
class DemoSecrets:
    """DEMO ONLY: throwaway keys made at start-up, so the demo needs no set-up."""

    secret_key: str = field(repr=False)
    signing_key_pem: str = field(repr=False)
    shop_api_key: str = field(repr=False)

    @classmethod
    def generate(cls) -> DemoSecrets:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        return cls(secret_key=secrets.token_urlsafe(48), signing_key_pem=pem,
                   shop_api_key=secrets.token_urlsafe(32))


@dataclass(frozen=True)
class DemoCardholder:
    """The one customer of the demo bank; a real bank knows who is logged in."""

    user_id: str = "demo-cardholder-1"
    user_name: str = "alex@example.com"
    display_name: str = "Alex Doe"
    card_name: str = "Demo Bank Visa ····4242"


class Bank:
    """The issuer's side of the demo: configuration, the mounted spc_embed app, pages."""

    def __init__(self, *, origin: str, shop_origin: str, data_dir: Path, demo_secrets: DemoSecrets,
                 cardholder: DemoCardholder | None = None) -> None:
        self.origin = origin
        self.cardholder = cardholder or DemoCardholder()
        config = IssuerConfig(
            # The RP id is the bank's host: "localhost" in the plain-HTTP demo.
            rp_id=urlsplit(origin).hostname or "",
            rp_name="Demo Bank",
            origin=origin,
            secret_keys=(demo_secrets.secret_key,),
            signing_keys=(demo_secrets.signing_key_pem,),
            merchants=(Merchant(id="demo-shop", name="Demo Shop", origins=(shop_origin,),
                                api_keys=(demo_secrets.shop_api_key,)),),
            database_url=f"sqlite:///{Path(data_dir) / 'bank.db'}",
        )
        self.issuer = Issuer(config, mount_path=MOUNT_PATH)
        self.app = Starlette(routes=[
            Route("/", self.home),
            Mount(MOUNT_PATH, app=self.issuer.app),
            Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
        ])

    @property
    def card_icon_url(self) -> str:
        return self.issuer.url("/widget/card.png")

    def enrollment_url(self, merchant_origin: str) -> str:
        """The enrolment iframe URL for the demo cardholder on ``merchant_origin``.

        A real bank calls this only after it has authenticated the cardholder
        itself (login, one-time code, its app); the demo bank trusts everyone.
        """
        return self.issuer.enrollment_url(
            user_id=self.cardholder.user_id,
            user_name=self.cardholder.user_name,
            user_display_name=self.cardholder.display_name,
            instrument_name=self.cardholder.card_name,
            instrument_icon=self.card_icon_url,
            merchant_origin=merchant_origin,
        )

    async def home(self, request: Request) -> Response:
        credentials = await self.issuer.store.list_credentials(self.cardholder.user_id)
        devices = [
            {"id": c.credential_id.hex(), "origin": c.enrolled_origin,
             "created": datetime.fromtimestamp(c.created_at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "last_used": c.last_used_at is not None}
            for c in credentials
        ]
        return templates.TemplateResponse(request, "bank/home.html", {
            "cardholder": self.cardholder,
            "devices": devices,
            "card_icon_url": self.card_icon_url,
            "spc_url": self.issuer.base_url,
        })


def create_bank(*, origin: str, shop_origin: str, data_dir: Path,
                demo_secrets: DemoSecrets | None = None) -> Bank:
    return Bank(origin=origin, shop_origin=shop_origin, data_dir=data_dir,
                demo_secrets=demo_secrets or DemoSecrets.generate())
