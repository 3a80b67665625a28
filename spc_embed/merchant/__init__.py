"""Merchant-side embedding kit: Permissions-Policy delegation, script injection
and the issuer ``<iframe>`` tag."""

from __future__ import annotations

from ..origins import serialized_origin
from .iframe import install_jinja_globals, issuer_iframe
from .middleware import SPCMerchantMiddleware
from .permissions_policy import (
    DEFAULT_FEATURES,
    MergedPolicy,
    PermissionsPolicyParseError,
    delegate_features,
)

__all__ = [
    "DEFAULT_FEATURES",
    "MergedPolicy",
    "PermissionsPolicyParseError",
    "SPCMerchantMiddleware",
    "delegate_features",
    "install_jinja_globals",
    "issuer_iframe",
    "serialized_origin",
]
