"""The wheel ships its templates and widget files: an installed copy serves them.

Builds the wheel, unpacks it into a fresh directory and runs the app from
there in a subprocess whose working directory is not the checkout, so nothing
can be picked up from the source tree by accident.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from starlette.testclient import TestClient
    import spc_embed
    from spc_embed.issuer import widget_directory
    sys.path.insert(0, sys.argv[2])
    from factories import make_issuer

    installed = Path(sys.argv[1]).resolve()
    assert Path(spc_embed.__file__).resolve().is_relative_to(installed), spc_embed.__file__
    assert widget_directory().resolve().is_relative_to(installed), widget_directory()
    issuer = make_issuer(Path.cwd() / "spc.db")
    url = issuer.enrollment_url(
        user_id="u1", user_name="alice", user_display_name="Alice", instrument_name="Card ****1234",
        instrument_icon="https://issuer.test/card.png", merchant_origin="https://merchant.test")
    with TestClient(issuer.app) as client:
        page = client.get(url.removeprefix(issuer.base_url))
        german = client.get("/enroll?token=bad", headers={"Accept-Language": "de"})
        script = client.get("/widget/enroll.js")
    assert page.status_code == 200 and 'id="spc-enroll-config"' in page.text, page.status_code
    # The compiled catalogs came with the wheel: the German frame is German.
    from spc_embed.i18n import SHIPPED_DIRECTORY
    assert (SHIPPED_DIRECTORY / "de" / "LC_MESSAGES" / "spc_embed.mo").is_file()
    assert '<html lang="de" dir="ltr">' in german.text and "Dieser Einrichtungslink ist ungültig" in german.text
    assert script.status_code == 200 and "navigator.credentials.create" in script.text
    print("served-from-wheel-ok")
    """
)


def test_installed_wheel_serves_iframe_and_widget(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = wheels.glob("spc_embed-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "spc_embed/py.typed" in names
    assert "spc_embed/templates/spc_embed/enroll.html" in names
    assert "spc_embed/widget/enroll.js" in names
    for locale in ("en", "de", "fr"):  # the catalogs, compiled by hatch_build.py, with their sources
        assert f"spc_embed/locale/{locale}/LC_MESSAGES/spc_embed.mo" in names
        assert f"spc_embed/locale/{locale}/LC_MESSAGES/spc_embed.po" in names

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", CHECK, str(site), str(ROOT / "tests")],
        cwd=workdir, capture_output=True, text=True,
        # The unpacked wheel comes first; the checkout is not on the path.
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert "served-from-wheel-ok" in result.stdout
