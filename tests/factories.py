"""Builders for issuer configurations and apps used across the test suite."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from spc_embed import Issuer, IssuerConfig, Merchant

ISSUER_ORIGIN = "https://issuer.test"
MERCHANT_ORIGIN = "https://merchant.test"
OTHER_MERCHANT_ORIGIN = "https://shop.test"
API_KEY = "merchant-api-key-0123456789abcdef"
OTHER_API_KEY = "shop-api-key-0123456789abcdef012"
SECRET = "test-secret-key-0123456789abcdef0123456789"
ADMIN_API_KEY = "issuer-admin-key-0123456789abcdefghij"
BANK_API_KEY = "bank-own-site-key-0123456789abcdefghi"


@cache
def signing_key_pem(index: int = 0) -> str:
    """A P-256 private key in PEM; cached per index so tests share a few keys."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def make_config(database_path: Path | str, *, issuer_origin: str = ISSUER_ORIGIN,
                merchant_origin: str = MERCHANT_ORIGIN, other_merchant_origin: str = OTHER_MERCHANT_ORIGIN,
                rp_id: str = "issuer.test", merchant_name: str = "Test Merchant", merchant_payees: tuple[Any, ...] = (),
                extra_merchants: tuple[Merchant, ...] = (), **overrides: Any) -> IssuerConfig:
    values: dict[str, Any] = dict(
        rp_id=rp_id,
        rp_name="Test Bank",
        origin=issuer_origin,
        secret_keys=(SECRET,),
        signing_keys=(signing_key_pem(0),),
        merchants=(
            # The payee its transactions show is itself (docs/security.md H7), or one of merchant_payees.
            Merchant(id="merchant", name=merchant_name, origins=(merchant_origin,), api_keys=(API_KEY,),
                     payees=merchant_payees),
            Merchant(id="shop", name="Other Shop", origins=(other_merchant_origin,), api_keys=(OTHER_API_KEY,)),
            *extra_merchants,
        ),
        database_url=f"sqlite:///{database_path}",
    )
    values.update(overrides)
    return IssuerConfig(**values)


def make_issuer(database_path: Path | str, *, mount_path: str = "", clock: Any = None,
                locale_directories: tuple[Path, ...] = (), **config_overrides: Any) -> Issuer:
    config = make_config(database_path, **config_overrides)
    kwargs: dict[str, Any] = {"mount_path": mount_path, "locale_directories": locale_directories}
    if clock is not None:
        kwargs["clock"] = clock
    return Issuer(config, **kwargs)


class FakeClock:
    """A settable clock: expiry is tested by moving time, never by sleeping."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
