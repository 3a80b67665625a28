"""Security header values as pure functions (docs/security.md W1): no app, no request."""

from __future__ import annotations

import pytest
from http_sfv import Dictionary, Token

from spc_embed.headers import (
    FRAME_FEATURES,
    content_security_policy,
    frame_ancestors,
    frame_permissions_policy,
    page_headers,
)

MERCHANT = "https://merchant.test"
SHOP = "https://shop.test:8443"


def directives(policy: str) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for part in policy.split("; "):
        name, _, value = part.partition(" ")
        assert name not in parsed, f"{name} twice in {policy!r}"
        parsed[name] = value
    return parsed


def test_frame_ancestors_without_origins_is_none() -> None:
    assert frame_ancestors([]) == "frame-ancestors 'none'"
    assert frame_ancestors(iter(())) == "frame-ancestors 'none'"


def test_frame_ancestors_lists_exactly_the_given_origins() -> None:
    assert frame_ancestors([MERCHANT]) == "frame-ancestors https://merchant.test"
    assert frame_ancestors([SHOP, MERCHANT]) == "frame-ancestors https://merchant.test https://shop.test:8443"


def test_frame_ancestors_is_deterministic_and_deduplicated() -> None:
    # Stable output keeps caches and tests honest whatever the configuration's order.
    assert frame_ancestors([SHOP, MERCHANT, SHOP]) == frame_ancestors([MERCHANT, SHOP])
    assert frame_ancestors({MERCHANT, SHOP}) == frame_ancestors((MERCHANT, SHOP))


def test_frame_ancestors_never_widens() -> None:
    value = frame_ancestors([MERCHANT])
    for wildcard in ("*", "https:", "'self'", "http:"):
        assert wildcard not in value.split()


def test_content_security_policy_is_strict() -> None:
    parsed = directives(content_security_policy())

    assert parsed["default-src"] == "'none'"
    assert parsed["script-src"] == "'self'"
    assert parsed["style-src"] == "'self'"
    assert parsed["connect-src"] == "'self'"
    assert parsed["base-uri"] == "'none'"
    assert parsed["form-action"] == "'none'"
    assert parsed["frame-ancestors"] == "'none'"
    policy = content_security_policy()
    for weakening in ("unsafe-inline", "unsafe-eval", "unsafe-hashes", "*", "data:" + " 'self'"):
        assert weakening not in parsed["script-src"] + parsed["style-src"], weakening
    assert "unsafe" not in policy


def test_content_security_policy_carries_the_frame_ancestors() -> None:
    parsed = directives(content_security_policy(frame_ancestor_origins=[MERCHANT]))

    assert parsed["frame-ancestors"] == MERCHANT


def test_content_security_policy_images_allow_card_art_from_https() -> None:
    # The instrument icon may live on the issuer's CDN; it is displayed, never executed.
    assert directives(content_security_policy())["img-src"].split() == ["'self'", "https:", "data:"]


def test_frame_permissions_policy_lets_the_frame_use_payment_and_webauthn() -> None:
    value = frame_permissions_policy()

    assert value == "payment=(self), publickey-credentials-create=(self), publickey-credentials-get=(self)"
    # It is an RFC 8941 dictionary whose members are inner lists of the token `self`.
    parsed = Dictionary()
    parsed.parse(value.encode())
    assert list(parsed.keys()) == list(FRAME_FEATURES)
    for feature in FRAME_FEATURES:
        assert [item.value for item in parsed[feature]] == [Token("self")]


def test_frame_permissions_policy_for_chosen_features() -> None:
    assert frame_permissions_policy(["payment"]) == "payment=(self)"
    assert frame_permissions_policy([]) == ""


def test_page_headers_for_a_framable_page() -> None:
    headers = page_headers(frame_ancestor_origins=[MERCHANT])

    assert directives(headers["Content-Security-Policy"])["frame-ancestors"] == MERCHANT
    assert headers["Permissions-Policy"] == frame_permissions_policy()
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    # X-Frame-Options cannot express an allowlist and would conflict with frame-ancestors.
    assert not any(name.lower() == "x-frame-options" for name in headers)


def test_page_headers_for_an_unframable_page() -> None:
    headers = page_headers()

    assert directives(headers["Content-Security-Policy"])["frame-ancestors"] == "'none'"
    # A page nobody may frame has no use for delegated features.
    assert "Permissions-Policy" not in headers
    assert not any(name.lower() == "x-frame-options" for name in headers)


@pytest.mark.parametrize("origins", [[MERCHANT], (MERCHANT, SHOP), iter([SHOP])])
def test_page_headers_accept_any_iterable(origins: object) -> None:
    expected = sorted(set(origins))  # type: ignore[call-overload]
    origins = iter(expected)
    headers = page_headers(frame_ancestor_origins=origins)

    assert directives(headers["Content-Security-Policy"])["frame-ancestors"].split() == expected
    assert "Permissions-Policy" in headers


def test_header_values_are_plain_ascii_without_line_breaks() -> None:
    for value in page_headers(frame_ancestor_origins=[MERCHANT, SHOP]).values():
        assert value.isascii() and "\r" not in value and "\n" not in value
