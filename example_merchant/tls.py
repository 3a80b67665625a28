"""Certificates for ``--https``: a throwaway CA (trustme) and one certificate for both demo sites.

The CA is written to the data directory and reused on the next start with the
same ``--data-dir``, so a browser that trusts it once keeps trusting it. On
Linux, a private NSS database that trusts it is made next to it too, for a
Chromium started with that directory as ``HOME`` (what the test suite does).
DEMO ONLY: whoever holds ``ca-key.pem`` can impersonate any site to a browser
that trusts ``ca.pem``; trust it in a throwaway profile, never system-wide for long.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trustme

SITE_NAMES = ("issuer.test", "merchant.test", "localhost")


@dataclass(frozen=True)
class DemoTLS:
    ca_file: Path
    cert_file: Path
    key_file: Path
    browser_home: Path | None  # a HOME whose NSS database trusts the CA (None without certutil)

    @classmethod
    def create(cls, directory: Path) -> DemoTLS:
        ca_file, ca_key_file = directory / "ca.pem", directory / "ca-key.pem"
        if ca_file.exists() and ca_key_file.exists():
            ca = trustme.CA.from_pem(ca_file.read_bytes(), ca_key_file.read_bytes())
        else:
            ca = trustme.CA(organization_name="spc-embed demo (DEMO ONLY)")
            ca.cert_pem.write_to_path(str(ca_file))
            ca.private_key_pem.write_to_path(str(ca_key_file))
            ca_key_file.chmod(0o600)
        # "localhost" too: the shop's backend reaches the bank there (the .test names resolve in the browser only).
        leaf = ca.issue_cert(*SITE_NAMES)
        cert_file, key_file = directory / "server-cert.pem", directory / "server-key.pem"
        cert_file.write_bytes(b"".join(pem.bytes() for pem in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_file))
        key_file.chmod(0o600)
        return cls(ca_file, cert_file, key_file, _nss_home(directory / "browser-home", ca_file))

    def client_context(self) -> ssl.SSLContext:
        """For the shop's backend: trusts this CA, and only it."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def _nss_home(home: Path, ca_file: Path) -> Path | None:
    certutil = shutil.which("certutil")
    if certutil is None:
        return None
    nssdb = home / ".pki" / "nssdb"
    try:
        if not (nssdb / "cert9.db").exists():
            nssdb.mkdir(parents=True, exist_ok=True)
            subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True,
                           capture_output=True)
        # Replace, so a regenerated CA is the one trusted.
        subprocess.run([certutil, "-d", f"sql:{nssdb}", "-D", "-n", "spc-embed-demo"], capture_output=True,
                       check=False)  # absent the first time
        subprocess.run([certutil, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "spc-embed-demo", "-i",
                        str(ca_file)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return home
