"""The issuer's entry point: one object that owns the configuration, the
database and the token machinery, and builds the mountable Starlette app.

    issuer = Issuer(IssuerConfig(...), mount_path="/spc")
    app.mount("/spc", issuer.app)                      # Starlette or FastAPI
    url = issuer.enrollment_url(user_id=..., merchant_origin=...)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from .config import IssuerConfig
from .enrollment_routes import enrollment_routes
from .errors import ConfigurationError
from .results import ResultSigner
from .storage import Store
from .tokens import EnrollmentToken, EnrollmentTokens
from .transaction_routes import PaymentHandles, transaction_routes
from .web import EXCEPTION_HANDLERS, DefaultHeaders, WidgetFiles


def widget_directory() -> Path:
    """Where the browser code is: inside the installed package, or widget/ in a checkout."""
    installed = Path(str(resources.files("spc_embed"))) / "widget"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "widget"


class Issuer:
    def __init__(
        self,
        config: IssuerConfig,
        *,
        mount_path: str = "",
        store: Store | None = None,
        template_directories: Sequence[str | Path] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mount_path and (not mount_path.startswith("/") or mount_path.endswith("/")):
            raise ConfigurationError(f"mount_path {mount_path!r} must start with '/' and not end with one")
        self.config = config
        self.mount_path = mount_path
        self.clock = clock
        self.store = store or Store(config.database_url, clock=clock)
        self.enrollment_tokens = EnrollmentTokens(config.secret_keys, max_age=config.enrollment_ttl, clock=clock)
        self.result_signer = ResultSigner(config.signing_keys, issuer=config.origin + mount_path,
                                          ttl=config.result_token_ttl, clock=clock)
        self.payment_handles = PaymentHandles(config.secret_keys, max_age=config.transaction_ttl, clock=clock)
        # Host templates first, so an issuer can restyle a page by shipping a
        # file with the same name (e.g. "spc_embed/enroll.html").
        loader = jinja2.ChoiceLoader([
            *(jinja2.FileSystemLoader(str(d)) for d in template_directories),
            jinja2.PackageLoader("spc_embed", "templates"),
        ])
        self.templates = Jinja2Templates(env=jinja2.Environment(loader=loader, autoescape=True))
        self.app = self._build_app()

    @property
    def base_url(self) -> str:
        """The public URL this app answers at: the issuer origin plus the mount path."""
        return self.config.origin + self.mount_path

    def url(self, path: str) -> str:
        return self.base_url + path

    def enrollment_url(
        self,
        *,
        user_id: str,
        user_name: str,
        user_display_name: str,
        instrument_name: str,
        instrument_icon: str,
        merchant_origin: str,
    ) -> str:
        """Mint a single-use enrolment token and return the iframe URL that carries it.

        Call this only after the cardholder has been authenticated by the issuer.
        """
        if self.config.merchant_for_origin(merchant_origin) is None:
            raise ConfigurationError(f"{merchant_origin!r} is not an origin of any configured merchant")
        token = self.enrollment_tokens.mint(EnrollmentToken(
            user_id=user_id, user_name=user_name, user_display_name=user_display_name,
            instrument_name=instrument_name, instrument_icon=instrument_icon,
            merchant_origin=merchant_origin,
        ))
        return self.url("/enroll?token=" + token)

    def _build_app(self) -> Starlette:
        routes = [
            *enrollment_routes(self),
            *transaction_routes(self),
            Mount("/widget", app=WidgetFiles(StaticFiles(directory=widget_directory()), self.config.merchant_origins),
                  name="widget"),
        ]
        return Starlette(
            routes=routes,
            middleware=[Middleware(DefaultHeaders)],
            exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        )
