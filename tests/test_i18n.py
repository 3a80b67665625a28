"""The frames' languages: catalogs shipped and the issuer's, the choice of locale, amounts, the link and initialize.

The browser side (the frames rendered in each language, chosen each way, RTL) is
tests/browser/test_languages.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from factories import API_KEY, MERCHANT_ORIGIN, make_config, make_issuer
from starlette.testclient import TestClient

from spc_embed import ConfigurationError, IssuerConfig
from spc_embed.i18n import SHIPPED_DIRECTORY, Catalogs, gettext_name, parse_accept_language
from spc_embed.payment import ExpectedPayment
from spc_embed.tokens import EnrollmentToken, EnrollmentTokens

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "spc_embed" / "templates"
SHIPPED = ("de", "en", "fr")


def write_po(directory: Path, locale: str, messages: dict[str, str]) -> None:
    target = directory / locale / "LC_MESSAGES"
    target.mkdir(parents=True)
    entries = "".join(f'msgid "{key}"\nmsgstr "{value}"\n\n' for key, value in messages.items())
    (target / "spc_embed.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n' + entries, encoding="utf-8")


def template_messages() -> set[str]:
    found = extract_from_dir(str(TEMPLATES), method_map=[("**.html", "jinja2")],
                             options_map={"**.html": {"extensions": "jinja2.ext.i18n"}})
    return {message for _, _, message, _, _ in found}


# The shipped catalogs


@pytest.mark.parametrize("locale", SHIPPED)
def test_every_frame_message_is_translated_in_every_shipped_catalog(locale: str) -> None:
    with (SHIPPED_DIRECTORY / locale / "LC_MESSAGES" / "spc_embed.po").open("rb") as fh:
        catalog = read_po(fh, locale=locale)
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}

    assert template_messages() - set(translated) == set(), "run pybabel extract/update (spc_embed/locale/README.md)"
    assert [(m.id, problems) for m, problems in catalog.check()] == []  # placeholders match
    for message, translation in translated.items():
        assert re.findall(r"%\(\w+\)s", message) == re.findall(r"%\(\w+\)s", translation), message


def test_the_template_catalog_is_up_to_date() -> None:
    with (SHIPPED_DIRECTORY / "spc_embed.pot").open("rb") as fh:
        template = {m.id for m in read_po(fh) if m.id}

    assert template == template_messages()


def test_accept_language_is_read_by_preference() -> None:
    assert parse_accept_language("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5") == ["fr-CH", "fr", "en", "de"]
    assert parse_accept_language("en;q=0.2, de") == ["de", "en"]
    assert parse_accept_language("de;q=0, fr;q=bad, <script>, it") == ["it"]
    assert parse_accept_language(None) == [] and parse_accept_language("") == []
    assert gettext_name("pt-br") == "pt_BR" and gettext_name("zh-Hant-TW") == "zh_Hant_TW"


def test_the_issuers_choice_then_the_browsers_then_the_default() -> None:
    catalogs = Catalogs(default_locale="en")

    assert catalogs.available == ["de", "en", "fr"]
    assert catalogs.choose("de", "fr").name == "de"
    assert catalogs.choose("de-AT", None).name == "de"  # a region finds its language
    assert catalogs.choose(None, "it, fr-CH;q=0.8, de;q=0.5").name == "fr"
    assert catalogs.choose("it", "de").name == "de"  # no catalog for the issuer's choice: the browser's
    assert catalogs.choose("it", "es").name == "en"  # nor for the browser's: the default
    assert Catalogs(default_locale="fr").choose(None, None).name == "fr"


def test_lang_dir_and_amounts_per_locale() -> None:
    catalogs = Catalogs()
    german, french, english = (catalogs.frame_locale(name) for name in ("de", "fr", "en"))

    assert (german.lang, german.direction) == ("de", "ltr")
    assert german.format_amount("1234.50", "EUR") == "1.234,50\xa0€"
    assert french.format_amount("1234.50", "EUR") == "1\u202f234,50\xa0€"
    assert english.format_amount("1234.50", "EUR") == "€1,234.50"
    # Never rounds away what the issuer recorded.
    assert english.format_amount("0.1234", "EUR") == "€0.1234"
    assert german.response_headers == {"Content-Language": "de", "Vary": "Accept-Language"}


def test_an_issuer_catalog_overrides_single_strings_and_adds_locales(tmp_path: Path) -> None:
    write_po(tmp_path, "de", {"Try again": "Nochmal"})
    write_po(tmp_path, "ar", {"Try again": "حاول مرة أخرى"})
    catalogs = Catalogs([tmp_path])
    german, arabic = catalogs.frame_locale("de"), catalogs.frame_locale("ar")

    assert german.translations.gettext("Try again") == "Nochmal"
    assert german.translations.gettext("Amount") == "Betrag"  # the rest still comes from the shipped catalog
    assert catalogs.available == ["ar", "de", "en", "fr"]
    assert arabic.translations.gettext("Try again") == "حاول مرة أخرى"
    assert arabic.translations.gettext("Amount") == "Amount"  # untranslated: English
    assert (arabic.lang, arabic.direction) == ("ar", "rtl")


def test_the_first_issuer_directory_wins(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write_po(first, "fr", {"Try again": "Encore"})
    write_po(second, "fr", {"Try again": "Recommencer", "Card": "CB"})

    french = Catalogs([first, second]).frame_locale("fr")

    assert french.translations.gettext("Try again") == "Encore"
    assert french.translations.gettext("Card") == "CB"


def test_catalog_problems_stop_the_issuer_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="default_locale 'it' has no message catalog"):
        Catalogs(default_locale="it")
    with pytest.raises(ConfigurationError, match="does not exist"):
        Catalogs([tmp_path / "missing"])
    broken = tmp_path / "broken" / "de" / "LC_MESSAGES"
    broken.mkdir(parents=True)
    (broken / "spc_embed.mo").write_bytes(b"not a catalog")
    with pytest.raises(ConfigurationError, match="cannot read the message catalog"):
        Catalogs([tmp_path / "broken"])
    with pytest.raises(ConfigurationError, match="default_locale"):
        make_config(tmp_path / "x.db", default_locale="english please")


def test_default_locale_from_the_environment(tmp_path: Path) -> None:
    config = make_config(tmp_path / "x.db")
    keys = tmp_path / "keys.pem"
    keys.write_text(config.signing_keys[0])
    env = {
        "SPC_RP_ID": config.rp_id, "SPC_RP_NAME": config.rp_name, "SPC_ORIGIN": config.origin,
        "SPC_SECRET_KEYS": config.secret_keys[0], "SPC_SIGNING_KEYS_FILE": str(keys),
        "SPC_MERCHANTS": '[{"id": "m", "origins": ["https://merchant.test"], "api_keys": []}]',
    }

    assert IssuerConfig.from_env(env).default_locale == "en"
    assert IssuerConfig.from_env({**env, "SPC_DEFAULT_LOCALE": "fr"}).default_locale == "fr"


# The link, initialize, and the pages


def test_enrolment_tokens_carry_the_locale_and_older_tokens_still_load() -> None:
    tokens = EnrollmentTokens(["k" * 8 + "0123456789abcdefghijklmnopqrstuv"], max_age=60)
    fields = dict(user_id="u", user_name="n", user_display_name="d", instrument_name="Card",
                  instrument_icon="https://issuer.test/c.png", merchant_origin=MERCHANT_ORIGIN)

    assert tokens.load(tokens.mint(EnrollmentToken(**fields, locale="fr-CH"))).locale == "fr-CH"
    older = tokens.mint(EnrollmentToken(**fields))  # minted without a locale: the payload has no such key
    assert tokens.load(older).locale is None
    with pytest.raises(ConfigurationError, match="locale"):
        EnrollmentToken(**fields, locale="fr CH")


def test_enrolment_page_speaks_the_links_locale(tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path / "x.db")
    link = dict(user_id="u1", user_name="a", user_display_name="A", instrument_name="Karte ****1",
                instrument_icon="https://issuer.test/c.png", merchant_origin=MERCHANT_ORIGIN)
    with pytest.raises(ConfigurationError, match="locale"):
        issuer.enrollment_url(**link, locale="<de>")

    with TestClient(issuer.app) as client:
        french = client.get(issuer.enrollment_url(**link, locale="fr").removeprefix(issuer.base_url),
                            headers={"Accept-Language": "de"})
        browser = client.get(issuer.enrollment_url(**link).removeprefix(issuer.base_url),
                             headers={"Accept-Language": "de-DE,de;q=0.9"})
        default = client.get(issuer.enrollment_url(**link).removeprefix(issuer.base_url))

    assert '<html lang="fr" dir="ltr">' in french.text and "Paiement plus rapide sur cet appareil" in french.text
    assert french.headers["content-language"] == "fr" and "Accept-Language" in french.headers["vary"]
    assert '<html lang="de" dir="ltr">' in browser.text and "Schneller bezahlen mit diesem Gerät" in browser.text
    assert '<html lang="en" dir="ltr">' in default.text and "Faster checkout on this device" in default.text


def test_initialize_keeps_the_locale_for_the_fallback_frame(tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path / "x.db")
    body = {"user_id": "u1", "transaction_data": {"amount": "1234.50", "currency": "EUR", "payee_name": "Test Merchant"}}
    with TestClient(issuer.app) as client:
        refused = client.post("/transaction/initialize", headers={"apiKey": API_KEY},
                              json={**body, "transaction_id": "t0", "locale": "fr_CH; drop"})
        started = client.post("/transaction/initialize", headers={"apiKey": API_KEY},
                              json={**body, "transaction_id": "t1", "locale": "fr"}).json()
        plain = client.post("/transaction/initialize", headers={"apiKey": API_KEY},
                            json={**body, "transaction_id": "t2"}).json()
        french = client.get(started["fallback_url"].removeprefix(issuer.base_url), headers={"Accept-Language": "de"})
        german = client.get(plain["fallback_url"].removeprefix(issuer.base_url), headers={"Accept-Language": "de"})

    assert refused.status_code == 400 and refused.json()["code"] == "invalid_request"
    # No passkey for this user: the frame says so, in the transaction's language, with its amount.
    assert '<html lang="fr" dir="ltr">' in french.text
    assert "1\u202f234,50\xa0€" in french.text and "Aucun appareil n’est encore configuré" in french.text
    assert '<html lang="de" dir="ltr">' in german.text and "1.234,50\xa0€" in german.text
    assert "Für diese Karte ist noch kein Gerät" in german.text


def test_transactions_stored_before_locales_still_load() -> None:
    expected = ExpectedPayment(challenge="c", rp_id="r", issuer_origin="https://i", merchant_origin="https://m",
                               user_id="u", user_handle=None, credential_ids=(), amount="1.00", currency="EUR",
                               payee_name="P", payee_origin=None, instrument_name=None, instrument_icon=None)
    stored = expected.to_json()
    del stored["locale"]

    assert ExpectedPayment.from_json(stored).locale is None


def test_no_developer_text_reaches_the_cardholder(tmp_path: Path) -> None:
    issuer = make_issuer(tmp_path / "x.db")
    with TestClient(issuer.app) as client:
        pages = [client.get("/pay?handle=forged"), client.get("/enroll?token=forged"), client.get("/pay"),
                 client.get("/enroll")]

    for page in pages:
        # What the page shows (the scripts' JSON carries the error code and its developer message for them).
        shown = re.sub(r"<script.*?</script>", "", page.text, flags=re.DOTALL)
        status = re.search(r'id="spc-status"[^>]*>(.*?)</p>', shown, re.DOTALL)
        assert status is not None and status.group(1).strip(), shown
        assert "signature" not in shown and "malformed" not in shown and "token" not in status.group(1)
        assert "Please start again from the checkout." in status.group(1)
