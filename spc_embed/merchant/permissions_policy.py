"""Merge an issuer delegation into a merchant's ``Permissions-Policy`` header.

The header is an RFC 8941 Dictionary whose members are allowlists: the token
``*``, the token ``self``, an origin string, or an Inner List of those
(W3C Permissions Policy, "Structured header serialization"). docs/security.md W2:
the merchant page must delegate ``payment`` (and the WebAuthn create/get
features used by the enrolment fallback) to the issuer origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

# The submodules, as the package root does not re-export its names for type checkers.
from http_sfv.dictionary import Dictionary
from http_sfv.item import InnerList, Item
from http_sfv.types import Token

from ..origins import serialized_origin, url_origin

DEFAULT_FEATURES: tuple[str, ...] = (
    "payment",
    "publickey-credentials-create",
    "publickey-credentials-get",
)

_SELF = "self"
_ALL = "*"
_FEATURE = re.compile(r"[a-z][a-z0-9-]*\Z")


class PermissionsPolicyParseError(ValueError):
    """The existing header is not a valid RFC 8941 Dictionary."""

    def __init__(self, header: str, reason: str) -> None:
        super().__init__(f"Unparseable Permissions-Policy header {header!r}: {reason}")
        self.header = header
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MergedPolicy:
    header: str
    # Features the existing header disables (``feature=()``) and that were kept
    # disabled because override was off: the issuer iframe cannot use them.
    left_disabled: tuple[str, ...] = ()


def validate_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """Validate and de-duplicate issuer origins, keeping their order."""
    if isinstance(origins, str):
        raise TypeError(f"issuer_origins must be a sequence of origins, not the string {origins!r}")
    checked = tuple(dict.fromkeys(serialized_origin(origin) for origin in origins))
    if not checked:
        raise ValueError("issuer_origins must name at least one issuer origin")
    return checked


def validate_features(features: Iterable[str]) -> tuple[str, ...]:
    checked = tuple(features)
    if isinstance(features, str) or not checked:
        raise ValueError(f"features must be a non-empty sequence of feature names, got {features!r}")
    for feature in checked:
        if not _FEATURE.match(feature):
            raise ValueError(f"{feature!r} is not a Permissions-Policy feature name")
    return checked


def delegate_features(
    existing_header: str | None,
    issuer_origins: Iterable[str],
    *,
    features: Iterable[str] = DEFAULT_FEATURES,
    override_disabled: bool = False,
) -> MergedPolicy:
    """Return ``existing_header`` with ``features`` delegated to ``issuer_origins``.

    Other directives are kept. Per feature: absent -> ``(self "ORIGIN"...)``;
    ``*`` -> unchanged; an allowlist -> the missing origins appended (and
    ``self``, see ``_extended``); ``()`` -> unchanged unless ``override_disabled``.
    """
    origins = validate_origins(issuer_origins)
    policy = _parse(existing_header)
    left_disabled: list[str] = []
    for feature in validate_features(features):
        member = policy.get(feature)
        if member is None:
            policy[feature] = _allowlist(origins)
        elif _allows_all(member):
            continue
        elif not _entries_with_origins(member):
            if override_disabled:
                policy[feature] = _allowlist(origins, params=member.params)
            else:
                left_disabled.append(feature)
        else:
            policy[feature] = _extended(member, origins)
    return MergedPolicy(header=str(policy), left_disabled=tuple(left_disabled))


def _parse(header: str | None) -> Dictionary:
    policy = Dictionary()
    if header is None or not header.strip():
        return policy
    try:
        policy.parse(header.encode("ascii"))
    except (UnicodeEncodeError, ValueError) as exc:
        reason = exc.__cause__ or exc
        raise PermissionsPolicyParseError(header, str(reason) or type(reason).__name__) from exc
    return policy


def _entries(member: Item | InnerList) -> list[Item]:
    return list(member) if isinstance(member, InnerList) else [member]


def _is_token(item: Item, name: str) -> bool:
    return isinstance(item.value, Token) and item.value == name


def _is_origin_string(item: Item) -> bool:
    return type(item.value) is str


def _allows_all(member: Item | InnerList) -> bool:
    return any(_is_token(item, _ALL) for item in _entries(member))


def _entries_with_origins(member: Item | InnerList) -> list[Item]:
    # Browsers ignore entries that are neither `self`, `*` nor an origin string,
    # so an allowlist made only of those is as disabled as `()`.
    return [i for i in _entries(member) if _is_token(i, _SELF) or _is_origin_string(i)]


def _allowlist(origins: tuple[str, ...], params: dict[str, object] | None = None) -> InnerList:
    allowlist = InnerList([Token(_SELF), *origins])
    allowlist.params.update(params or {})
    return allowlist


def _extended(member: Item | InnerList, origins: tuple[str, ...]) -> InnerList:
    entries = _entries(member)
    result = InnerList()
    result.params.update(member.params)
    # The embedding document must itself be allowed the feature before it can
    # delegate it (Permissions Policy "Define an inherited policy", step 2), so an
    # allowlist without `self` would never reach the issuer iframe.
    if not any(_is_token(item, _SELF) for item in entries):
        result.append(Token(_SELF))
    if isinstance(member, InnerList):
        entries_to_keep = entries
    else:
        entries_to_keep = [Item(member.value)]  # the Item's parameters now sit on the list
    present = {_origin_key(cast(str, item.value)) for item in entries if _is_origin_string(item)}
    # InnerList.extend skips http_sfv's item wrapping; append() does it.
    additions: list[Item | str] = [*entries_to_keep, *(o for o in origins if o not in present)]
    for entry in additions:
        result.append(entry)
    return result


def _origin_key(value: str) -> str:
    # Browsers compare allowlist entries as origins, so "https://issuer.test/"
    # already covers "https://issuer.test".
    try:
        return url_origin(value)
    except ValueError:
        return value
