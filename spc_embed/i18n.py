"""The cardholder's language in the issuer's frames: message catalogs, the choice of locale, amounts.

The frames' text is in GNU gettext catalogs, one per locale, in the standard
layout ``<directory>/<locale>/LC_MESSAGES/spc_embed.po`` (or ``.mo``):

- shipped with the package: ``spc_embed/locale/`` holds English, German and
  French. The ``.po`` files are the source; the wheel also carries them
  compiled to ``.mo`` (``hatch_build.py``), and where there is no ``.mo``
  (a source checkout) the ``.po`` is compiled in memory when the issuer starts;
- the issuer's own (``Issuer(locale_directories=[...])``): a catalog there adds
  a locale, or overrides single strings of a shipped one (only the messages it
  translates; the rest still come from the shipped catalog, then English).

Which locale a frame speaks (:meth:`Catalogs.choose`): the ``locale`` the
issuer passed (in the enrolment link, or at initialize), else the browser's
``Accept-Language``, else the issuer's ``default_locale``; each matched
against the available catalogs (``de-AT`` finds ``de``).

The templates use Jinja's i18n extension (``{% trans %}``, ``_()``); the
translations of one page are passed in its context (:func:`install_gettext`),
so one environment serves every language at once.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import jinja2
from babel import Locale, UnknownLocaleError
from babel.core import negotiate_locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_currency
from babel.support import NullTranslations, Translations

from .errors import ConfigurationError

DOMAIN = "spc_embed"
SHIPPED_DIRECTORY = Path(__file__).resolve().parent / "locale"
# BCP 47 as far as a frame needs it (language, script, region, variants); "_" accepted for gettext's spelling.
LOCALE_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")
MAX_ACCEPT_LANGUAGE_ITEMS = 16


def is_locale_tag(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 35 and LOCALE_TAG.fullmatch(value) is not None


def check_locale_tag(value: object, *, what: str) -> str:
    """``value`` if it is a language tag such as ``de`` or ``pt-BR``; ConfigurationError otherwise."""
    if not is_locale_tag(value):
        raise ConfigurationError(f"{what} must be a language tag such as 'de' or 'pt-BR', got {value!r}")
    return str(value)


def gettext_name(tag: str) -> str:
    """``pt-BR`` -> ``pt_BR``: how gettext directories and Babel spell a locale."""
    parts = tag.replace("-", "_").split("_")
    return "_".join([parts[0].lower(), *(p.upper() if len(p) == 2 else p for p in parts[1:])])


def html_lang(name: str) -> str:
    """``pt_BR`` -> ``pt-BR``: the BCP 47 spelling for ``lang`` attributes."""
    return name.replace("_", "-")


def parse_accept_language(header: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, most preferred first (``q=0`` and ``*`` dropped)."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:MAX_ACCEPT_LANGUAGE_ITEMS]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        quality = 1.0
        match = re.fullmatch(r"\s*q\s*=\s*([01](?:\.[0-9]{0,3})?)\s*", params) if params else None
        if params and match is None:
            continue
        if match is not None:
            quality = float(match.group(1))
        if quality <= 0 or not is_locale_tag(tag):
            continue
        weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def _load_catalog(directory: Path, name: str) -> Translations | None:
    """``directory/name/LC_MESSAGES/spc_embed.mo``, else the ``.po`` beside it compiled in memory."""
    messages = directory / name / "LC_MESSAGES"
    compiled, source = messages / f"{DOMAIN}.mo", messages / f"{DOMAIN}.po"
    try:
        if compiled.is_file():
            with compiled.open("rb") as fh:
                return Translations(fh, domain=DOMAIN)
        if source.is_file():
            with source.open("rb") as fh:
                catalog = read_po(fh, locale=name, domain=DOMAIN)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)  # fuzzy entries are left out, as msgfmt does
            buffer.seek(0)
            return Translations(buffer, domain=DOMAIN)
    except Exception as exc:  # a broken catalog stops the issuer at start-up, naming the file
        raise ConfigurationError(f"cannot read the message catalog {messages}: {exc}") from exc
    return None


def _catalog_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        entry.name for entry in directory.iterdir()
        if is_locale_tag(entry.name) and any((entry / "LC_MESSAGES" / f"{DOMAIN}{ext}").is_file() for ext in (".mo", ".po"))
    )


@dataclass(frozen=True)
class FrameLocale:
    """The language one frame is rendered in."""

    name: str  # gettext spelling: "de", "pt_BR"
    translations: NullTranslations
    babel_locale: Locale

    @property
    def lang(self) -> str:
        return html_lang(self.name)

    @property
    def response_headers(self) -> dict[str, str]:
        """The page's language, and that it depends on the browser's (for any cache on the way)."""
        return {"Content-Language": self.lang, "Vary": "Accept-Language"}

    @property
    def direction(self) -> str:
        """``"rtl"`` or ``"ltr"``, for the page's ``dir``."""
        return "rtl" if self.babel_locale.text_direction == "rtl" else "ltr"

    def format_amount(self, amount: str, currency: str) -> str:
        """``"1234.50"``, ``"EUR"`` -> ``"1.234,50 €"`` in German; never rounds digits away."""
        try:
            value = Decimal(amount)
        except InvalidOperation:
            return f"{amount} {currency}"
        return format_currency(value, currency, locale=self.babel_locale, decimal_quantization=False)


class Catalogs:
    """Every locale the frames can speak: the shipped catalogs with the issuer's over them."""

    def __init__(self, directories: Sequence[str | Path] = (), *, default_locale: str = "en") -> None:
        issuer_directories = [Path(d) for d in directories]
        for directory in issuer_directories:
            if not directory.is_dir():
                raise ConfigurationError(f"locale directory {str(directory)!r} does not exist")
        # Lowest precedence first: the shipped catalogs, then the issuer's directories, last one first.
        layers = [SHIPPED_DIRECTORY, *reversed(issuer_directories)]
        merged: dict[str, Translations] = {}
        for directory in layers:
            for name in _catalog_names(directory):
                loaded = _load_catalog(directory, name)
                if loaded is None:
                    continue
                if name in merged:
                    merged[name].merge(loaded)  # the later layer's messages win
                else:
                    merged[name] = loaded
        self._translations: dict[str, NullTranslations] = dict(merged)
        self._locales: dict[str, Locale] = {}
        for name in self._translations:
            try:
                self._locales[name] = Locale.parse(name)
            except (ValueError, UnknownLocaleError) as exc:
                raise ConfigurationError(f"message catalog {name!r}: not a locale Babel knows ({exc})") from exc
        check_locale_tag(default_locale, what="default_locale")
        default = self._match([default_locale])
        if default is None:
            raise ConfigurationError(
                f"default_locale {default_locale!r} has no message catalog; available: {', '.join(self.available)}"
            )
        self.default = default

    @property
    def available(self) -> list[str]:
        return sorted(self._translations)

    def _match(self, tags: Iterable[str]) -> str | None:
        preferred = [gettext_name(tag) for tag in tags if is_locale_tag(tag)]
        if not preferred:
            return None
        return negotiate_locale(preferred, self.available, sep="_")

    def choose(self, requested: str | None, accept_language: str | None) -> FrameLocale:
        """The issuer's ``requested`` locale, else the browser's preference, else the default."""
        name = (
            (self._match([requested]) if requested else None)
            or self._match(parse_accept_language(accept_language))
            or self.default
        )
        return self.frame_locale(name)

    def frame_locale(self, name: str) -> FrameLocale:
        return FrameLocale(name=name, translations=self._translations[name], babel_locale=self._locales[name])


@jinja2.pass_context
def _gettext(context: jinja2.runtime.Context, message: str) -> str:
    return _translations_of(context).gettext(message)


@jinja2.pass_context
def _ngettext(context: jinja2.runtime.Context, singular: str, plural: str, count: int) -> str:
    return _translations_of(context).ngettext(singular, plural, count)


def _translations_of(context: jinja2.runtime.Context) -> NullTranslations:
    frame_locale: Any = context.get("frame_locale")
    return frame_locale.translations if isinstance(frame_locale, FrameLocale) else NullTranslations()


def install_gettext(env: jinja2.Environment) -> None:
    """Jinja's i18n extension on ``env``, translating with the ``frame_locale`` of each render's context."""
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
