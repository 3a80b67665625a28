"""What every handler and service needs, in one object built once by :class:`~spc_embed.Issuer`.

The issuer stores it on its Starlette app (``app.state.spc``); a handler reaches
it as ``request.app.state.spc``, which is the issuer's own app even when the
issuer is mounted in a host app (Starlette sets ``scope["app"]`` to the
innermost application handling the request). The services take it as their
first argument and never see a request.

Of the package this module imports only the types of its fields, none of
which imports it back, so the issuer, the routes, the OpenAPI document and the
services can all import it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .api_keys import ApiKeys
from .config import IssuerConfig
from .i18n import Catalogs
from .results import ResultSigner
from .storage import Store
from .tokens import EnrollmentTokens, OptOutTokens, PaymentHandles

if TYPE_CHECKING:
    # Only the web layer renders templates; the services using this context never import Starlette.
    from starlette.templating import Jinja2Templates


@dataclass(frozen=True, eq=False)
class IssuerContext:
    config: IssuerConfig
    store: Store
    enrollment_tokens: EnrollmentTokens
    result_signer: ResultSigner
    payment_handles: PaymentHandles
    opt_out_tokens: OptOutTokens
    api_keys: ApiKeys
    templates: Jinja2Templates
    catalogs: Catalogs  # the frames' languages (spc_embed/i18n.py)
    base_url: str  # the public URL of the app: config.origin + the mount path
    clock: Callable[[], float]

    def url(self, path: str) -> str:
        """An absolute public URL of this app, from the configured origin (never the request's Host)."""
        return self.base_url + path
