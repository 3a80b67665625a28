"""Card icons and logo URLs: only spellings a browser signs as written (docs/security.md S6, S7).

tests/browser/test_image_urls.py checks the same lists against Chromium's own URL parser.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spc_embed.errors import ConfigurationError
from spc_embed.image_urls import image_url_problem, image_url_schema
from spc_embed.tokens import EnrollmentToken

# Each is exactly what Chromium writes back for it.
ACCEPTED = [
    "https://issuer.test/card.png",
    "https://issuer.test/",
    "https://cdn.issuer.test:8443/cards/visa%20gold.png?v=2&size=large",
    "https://issuer.test/~cards/a-b_c.d/!$&'()*+,;=:@.png",
    "https://issuer.test/a%2Fb.png",
    "https://xn--bcher-kva.example/card.png",
    "https://issuer.test/card.png?",
]
ACCEPTED_LOCAL = ["http://localhost:8000/static/card.png", "http://bank.localhost/card.png"]
DATA = ["data:image/png;base64,iVBORw0KGgo=", "data:image/svg+xml,%3Csvg%2F%3E", "data:image/svg+xml,%3csvg%2f%3e",
        "data:image/svg+xml,<svg/>", "data:image/svg+xml;utf8,<svg%20xmlns='http://www.w3.org/2000/svg'/>"]

# Chromium signs each of these in another spelling (tests/browser checks that it does).
REWRITTEN = {
    "https://Issuer.test/card.png": "lower case",
    "https://issuer.test:443/card.png": "default port",
    "https://issuer.test": "a path",
    "https://issuer.test?v=1": "a path",
    "https://issuer.test/cards/../card.png": "segments",
    "https://issuer.test/./card.png": "segments",
    "https://issuer.test/cards/%2e%2E/card.png": "segments",
    "https://issuer.test/cards/..": "segments",
    "https://01.2.3.4/card.png": "not an IP address",
    "https://1.2.3.04/card.png": "not an IP address",
    "https://issuer.test:0443/card.png": "leading zeros",
    "https://issuer.test/a\"b.png": "percent-encode",
    "https://issuer.test/a<b>.png": "percent-encode",
    "https://issuer.test/a{b}.png": "percent-encode",
    "https://issuer.test/a`b.png": "percent-encode",
    "https://issuer.test/card.png?name=o'brien": "percent-encode",
    "https://issuer.test\\card.png": "a path",
}
# Kept as written by the current Chromium, refused all the same: older versions decoded escaped letters and
# digits, and the others are characters URL parsers have disagreed about.
REFUSED_AS_UNSTABLE = {
    "https://issuer.test/100%.png": "%25",
    "https://issuer.test/%41.png": "letters, digits",
    "https://issuer.test/%7Ecard.png": "letters, digits",
    "https://issuer.test/a^b.png": "percent-encode",
    "https://issuer.test/a|b.png": "percent-encode",
}
REFUSED = {
    "": "1 to",
    "https://issuer.test/my card.png": "without spaces",
    "https://issuer.test/carte-\u00e9.png": "printable ASCII",
    "https://issuer.test/card.png#front": "fragment",
    "https://user@issuer.test/card.png": "user name",
    "https://[::1]/card.png": "DNS name",
    "https://1.2.3.4/card.png": "not an IP address",
    "https://issuer.0x1/card.png": "not an IP address",
    "https://issuer_cdn.test/card.png": "DNS name",
    "https://issuer.test:99999/card.png": "1 to 65535",
    "http://issuer.test/card.png": "https",
    "http://localhost.evil.test/card.png": "https",
    "ftp://issuer.test/card.png": "https:// URL or a data:image/",
    "javascript:alert(1)": "https:// URL or a data:image/",
    "data:text/html,<b>": "https:// URL or a data:image/",
}


@pytest.mark.parametrize("url", ACCEPTED + DATA)
def test_accepted(url: str) -> None:
    assert image_url_problem(url) is None


@pytest.mark.parametrize("url", ACCEPTED_LOCAL)
def test_http_only_on_localhost_and_only_where_asked(url: str) -> None:
    assert image_url_problem(url, local_http=True) is None
    assert "https" in image_url_problem(url)


@pytest.mark.parametrize("url,reason", [*REWRITTEN.items(), *REFUSED_AS_UNSTABLE.items(), *REFUSED.items()])
def test_refused_with_what_to_change(url: str, reason: str) -> None:
    problem = image_url_problem(url, local_http=True)
    assert problem is not None and reason in problem


def test_an_enrolment_token_refuses_an_icon_the_browser_would_rewrite() -> None:
    card = {"user_id": "u", "user_name": "u", "user_display_name": "U", "instrument_name": "Visa",
            "merchant_origin": "https://merchant.test"}
    assert EnrollmentToken(**card, instrument_icon="https://issuer.test/card.png").instrument_icon
    with pytest.raises(ConfigurationError, match="lower case"):
        EnrollmentToken(**card, instrument_icon="https://ISSUER.test/card.png")


def schema_accepts(url: str, *, local_http: bool = False) -> bool:
    schema = image_url_schema(local_http=local_http)
    return (schema["minLength"] <= len(url) <= schema["maxLength"] and re.search(schema["pattern"], url) is not None
            and not any(re.search(p["pattern"], url) for p in schema["not"]["anyOf"]))


@pytest.mark.parametrize("url", ACCEPTED + DATA)
def test_the_openapi_schema_accepts_what_the_check_accepts(url: str) -> None:
    assert schema_accepts(url)


@pytest.mark.parametrize("url", [*REWRITTEN, *REFUSED_AS_UNSTABLE, *REFUSED, *ACCEPTED_LOCAL])
def test_the_openapi_schema_refuses_what_the_check_refuses(url: str) -> None:
    assert not schema_accepts(url)
    assert schema_accepts(url, local_http=True) == (url in ACCEPTED_LOCAL)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_every_url_the_schema_allows_is_accepted(data: st.DataObject) -> None:
    # What schema-driven clients and tests (schemathesis) generate from the OpenAPI document.
    schema = image_url_schema(local_http=data.draw(st.booleans()))
    url = data.draw(st.from_regex(schema["pattern"], fullmatch=True).filter(
        lambda u: not any(re.search(p["pattern"], u) for p in schema["not"]["anyOf"])))
    assert image_url_problem(url, local_http="http://" in schema["pattern"]) is None, url
