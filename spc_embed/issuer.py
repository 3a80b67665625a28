"""The issuer's entry point: one object that owns the configuration, the
database and the token machinery, and builds the mountable Starlette app.

    issuer = Issuer(IssuerConfig(...), mount_path="/spc")
    app = Starlette(lifespan=issuer.lifespan)          # or FastAPI(lifespan=issuer.lifespan)
    app.mount("/spc", issuer.app)
    url = issuer.enrollment_url(user_id=..., merchant_origin=...)

Starlette does not run a mounted app's lifespan, so the host passes
``issuer.lifespan`` to its own app; ``issuer.app`` has the same lifespan for
when it is served (or tested) on its own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from . import enrollment_routes, enrollment_service, pay_routes, registration_routes
from .api_keys import ApiKeys
from .config import IssuerConfig
from .context import IssuerContext
from .errors import ConfigurationError, InvalidRequest
from .i18n import Catalogs, install_gettext
from .results import ResultSigner
from .storage import Store
from .tokens import EnrollmentTokens, OptOutTokens, PaymentHandles
from .transaction_routes import transaction_routes
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
        locale_directories: Sequence[str | Path] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mount_path and (not mount_path.startswith("/") or mount_path.endswith("/")):
            raise ConfigurationError(f"mount_path {mount_path!r} must start with '/' and not end with one")
        self.config = config
        self.mount_path = mount_path
        self.clock = clock
        self.store = store or Store(config.database_url, clock=clock, pool_size=config.database_pool_size)
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
        env = jinja2.Environment(loader=loader, autoescape=True)
        install_gettext(env)
        self.templates = Jinja2Templates(env=env)
        # The frames' languages: the shipped catalogs, with the issuer's own
        # (``<dir>/<locale>/LC_MESSAGES/spc_embed.po`` or ``.mo``) adding locales or overriding strings.
        self.catalogs = Catalogs(locale_directories, default_locale=config.default_locale)
        self.context = IssuerContext(
            config=config, store=self.store, enrollment_tokens=self.enrollment_tokens,
            result_signer=self.result_signer, payment_handles=self.payment_handles,
            opt_out_tokens=OptOutTokens(config.secret_keys),
            api_keys=ApiKeys(config.merchants, config.admin_api_key_hashes), templates=self.templates,
            catalogs=self.catalogs,
            base_url=config.origin + mount_path, clock=clock,
        )
        self.app = self._build_app()

    @property
    def base_url(self) -> str:
        """The public URL this app answers at: the issuer origin plus the mount path."""
        return self.context.base_url

    def url(self, path: str) -> str:
        return self.context.url(path)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Open the store at startup and close it at shutdown.

        Pass it to the host app, ``Starlette(lifespan=issuer.lifespan)`` or
        ``FastAPI(lifespan=issuer.lifespan)``, or enter it around other uses
        (``async with issuer.lifespan(): ...``). ``issuer.app`` runs it too when
        served on its own; the store counts its openings, so both may run.
        """
        await self.store.open()
        try:
            yield
        finally:
            await self.store.close()

    def enrollment_url(
        self,
        *,
        user_id: str,
        user_name: str,
        user_display_name: str,
        instrument_name: str,
        instrument_icon: str,
        merchant_origin: str,
        locale: str | None = None,
        instrument_id: str | None = None,
    ) -> str:
        """Mint a single-use enrolment token and return the iframe URL that carries it.

        Call this only after the cardholder has been authenticated by the issuer.
        ``instrument_id`` is the card's stable id at the issuer (not its number):
        the credential is enrolled for that card, and only that card's
        credentials confirm a payment initialize names it for. Without it the
        card's id is ``instrument_name``.
        ``locale`` (a language tag such as ``"de"`` or ``"fr-CH"``) is the
        cardholder's language, if the issuer knows it; without it, or without a
        catalog for it, the frame speaks the browser's ``Accept-Language``, else
        ``default_locale``.
        """
        fields = {
            "user_id": user_id, "user_name": user_name, "user_display_name": user_display_name,
            "instrument_name": instrument_name, "instrument_icon": instrument_icon,
            "merchant_origin": merchant_origin, "locale": locale, "instrument_id": instrument_id,
        }
        try:
            return enrollment_service.enrollment_link(self.context, fields).url
        except InvalidRequest as exc:  # in process, a bad argument is the caller's configuration
            raise ConfigurationError(exc.message) from exc

    def _build_app(self) -> Starlette:
        widget = WidgetFiles(StaticFiles(directory=widget_directory()), self.config.merchant_origins)
        app = Starlette(
            routes=[
                # The payment API first: the router tries routes in order, and these are the busiest.
                *transaction_routes(self.config.merchant_origins),
                *enrollment_routes.ROUTES,
                *pay_routes.ROUTES,
                *registration_routes.ROUTES,
                Mount("/widget", app=widget, name="widget"),
            ],
            middleware=[Middleware(DefaultHeaders)],
            exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
            lifespan=self.lifespan,
        )
        app.state.spc = self.context
        return app
