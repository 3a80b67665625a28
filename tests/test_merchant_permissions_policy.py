from __future__ import annotations

import pytest

from spc_embed.merchant.permissions_policy import (
    MergedPolicy,
    PermissionsPolicyParseError,
    delegate_features,
    serialized_origin,
)

ISSUER = "https://issuer.test"
DELEGATED = f'(self "{ISSUER}")'


def merge(header: str | None, *, origins: tuple[str, ...] = (ISSUER,), **kwargs: object) -> MergedPolicy:
    return delegate_features(header, origins, features=("payment",), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("header", [None, "", "   "])
def test_absent_header_delegates_every_default_feature(header: str | None) -> None:
    merged = delegate_features(header, [ISSUER])
    assert merged == MergedPolicy(
        header=(
            f"payment={DELEGATED}, publickey-credentials-create={DELEGATED}, "
            f"publickey-credentials-get={DELEGATED}"
        ),
        left_disabled=(),
    )


def test_other_directives_are_kept_in_place() -> None:
    merged = merge('camera=(), geolocation=(self "https://maps.test"), fullscreen=*')
    assert merged.header == (
        f'camera=(), geolocation=(self "https://maps.test"), fullscreen=*, payment={DELEGATED}'
    )


def test_existing_allowlist_gets_missing_origins_appended_in_order() -> None:
    merged = merge(
        'payment=(self "https://psp.test");report-to=main',
        origins=(ISSUER, "https://issuer2.test"),
    )
    assert merged.header == 'payment=(self "https://psp.test" "https://issuer.test" "https://issuer2.test");report-to=main'


@pytest.mark.parametrize("listed", [ISSUER, ISSUER + "/"])
def test_existing_allowlist_with_the_origin_is_not_duplicated(listed: str) -> None:
    header = f'payment=("{listed}" self)'
    assert merge(header).header == header


def test_allowlist_without_self_gets_self_because_delegation_needs_it() -> None:
    assert merge('payment=("https://psp.test")').header == 'payment=(self "https://psp.test" "https://issuer.test")'


def test_bare_item_allowlist_becomes_an_inner_list_keeping_parameters() -> None:
    assert merge("payment=self;report-to=x").header == f"payment={DELEGATED};report-to=x"


@pytest.mark.parametrize("header", ["payment=*", "payment=(*)", 'payment=(self * "https://psp.test")'])
def test_wildcard_is_left_alone(header: str) -> None:
    assert merge(header) == MergedPolicy(header=header, left_disabled=())


@pytest.mark.parametrize("header", ["payment=()", "payment", "payment=(?1 42)"])
def test_disabled_feature_stays_disabled_and_is_reported(header: str) -> None:
    merged = merge(header)
    assert merged.left_disabled == ("payment",)
    assert merged.header == header


def test_disabled_feature_is_delegated_with_override_keeping_parameters() -> None:
    merged = merge("camera=(), payment=();report-to=x", override_disabled=True)
    assert merged == MergedPolicy(header=f"camera=(), payment={DELEGATED};report-to=x", left_disabled=())


def test_only_disabled_features_are_reported() -> None:
    merged = delegate_features("publickey-credentials-get=()", [ISSUER])
    assert merged.left_disabled == ("publickey-credentials-get",)
    assert f"payment={DELEGATED}" in merged.header
    assert "publickey-credentials-get=()" in merged.header


def test_duplicate_issuer_origins_are_listed_once() -> None:
    assert merge(None, origins=(ISSUER, ISSUER)).header == f"payment={DELEGATED}"


@pytest.mark.parametrize(
    "header", ["payment=(self", "payment=self,", "Payment=()", 'payment=("https://ü.test")', "payment=(self)garbage"]
)
def test_unparseable_header_raises_a_typed_error(header: str) -> None:
    with pytest.raises(PermissionsPolicyParseError) as info:
        merge(header)
    assert info.value.header == header
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("origin", "message"),
    [
        ("https://issuer.test/", "expected 'https://issuer.test'"),
        ("https://issuer.test/pay", "expected 'https://issuer.test'"),
        ("https://Issuer.test", "expected 'https://issuer.test'"),
        ("https://issuer.test:443", "expected 'https://issuer.test'"),
        ("http://issuer.test", "must use https"),
        ("issuer.test", "not an absolute http(s) URL"),
        ("*", "not an absolute http(s) URL"),
        ("https://user:pw@issuer.test", "credentials"),
        ('https://issuer.test"', "not an absolute http(s) URL"),
        ("https://bücher.test", "xn--"),
    ],
)
def test_invalid_origins_raise_value_error(origin: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        delegate_features(None, [origin])


def test_local_development_origins_are_accepted() -> None:
    assert serialized_origin("http://localhost:8000") == "http://localhost:8000"
    assert serialized_origin("http://issuer.localhost") == "http://issuer.localhost"
    assert serialized_origin("https://issuer.test:9443") == "https://issuer.test:9443"


def test_origin_configuration_errors() -> None:
    with pytest.raises(TypeError):
        delegate_features(None, ISSUER)
    with pytest.raises(ValueError, match="at least one"):
        delegate_features(None, [])
    with pytest.raises(ValueError, match="feature name"):
        delegate_features(None, [ISSUER], features=("Payment",))
