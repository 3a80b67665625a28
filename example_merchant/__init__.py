"""A runnable two-origin demo of spc-embed: a bank (the issuer) and a shop (a merchant).

    python -m example_merchant            # bank on http://localhost:8000, shop on http://merchant.localhost:8001

``create_bank`` and ``create_shop`` build the two ASGI apps; ``__main__`` serves
both from one process. Tests import the factories and serve them their own way.
"""

from __future__ import annotations

from .bank import Bank, DemoCardholder, DemoSecrets, create_bank
from .shop import create_shop

__all__ = ["Bank", "DemoCardholder", "DemoSecrets", "create_bank", "create_shop"]
