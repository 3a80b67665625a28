"""A runnable two-origin demo of spc-embed: a bank (the issuer) and a shop (a merchant).

    python -m example_merchant            # bank on http://localhost:8000, shop on http://merchant.localhost:8001
    python -m example_merchant --https    # https://issuer.test:8000 and https://merchant.test:8001, demo CA

``create_bank`` and ``create_shop`` build the two ASGI apps; ``__main__`` serves
both from one process. Tests import the factories and serve them their own way.
"""

from __future__ import annotations

from .bank import BANK_TENANT_ID, DEMO_ONE_TIME_CODE, SHOP_ID, Bank, DemoCardholder, DemoSecrets, create_bank
from .shop import PRODUCTS, BankConnection, create_shop
from .tls import DemoTLS

__all__ = [
    "BANK_TENANT_ID", "DEMO_ONE_TIME_CODE", "PRODUCTS", "SHOP_ID", "Bank", "BankConnection", "DemoCardholder", "DemoSecrets",
    "DemoTLS", "create_bank", "create_shop",
]
