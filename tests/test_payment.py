"""SPC (payment.get) and fallback (webauthn.get) assertion verification: docs/security.md A-, S- and P-items.

Every credential is enrolled through the real /enroll endpoints and every
assertion is genuinely signed by the software authenticator; each rejection
is checked for its status and stable code, and for leaving the transaction
pending and the credential's sign count where it was.
"""

from __future__ import annotations

import asyncio
import json

import cbor2
import httpx
import pytest
from factories import API_KEY, ISSUER_ORIGIN, MERCHANT_ORIGIN, OTHER_MERCHANT_ORIGIN
from payment_helpers import (
    RP_ID,
    TRANSACTION_DATA,
    b64decode,
    edit_client_data,
    enroll,
    fallback_assertion,
    jwt_claims,
    make_bank,
    signed_payment,
    spc_assertion,
)
from softauthn import (
    ES256,
    BrowserBoundKey,
    SoftAuthenticator,
    b64url,
    build_client_data_json,
    cose_key,
    der_to_raw,
    generate_private_key,
    raw_to_der,
)

from spc_embed.errors import AssertionRejected, InvalidRequest, SPCEmbedError
from spc_embed.payment import ExpectedPayment, payment_request_options, verify_payment_assertion
from spc_embed.storage import Credential
from spc_embed.transactions import PaymentEntityLogo


@pytest.fixture
def bank(tmp_path, database_url):
    with make_bank(tmp_path, database_url=database_url) as bank:
        yield bank


def reject_spc(bank, code: str, *, status: int = 400, data=None, payment_edit=None, **assertion_overrides):
    """Initialize, build a genuine SPC assertion with one thing bent, finalize, expect a clean rejection."""
    transaction_id, options = bank.new_transaction(data=data)
    payment = signed_payment(options)
    if payment_edit is not None:
        payment_edit(payment)
    before = bank.sign_count()
    assertion = spc_assertion(bank.auth, options, payment=payment, **assertion_overrides)
    response = bank.finalize(transaction_id, assertion)
    bank.assert_rejected(response, code, transaction_id, status=status, sign_count=before)
    return response


def accept_spc(bank, *, data=None, payment_edit=None, **assertion_overrides):
    transaction_id, options = bank.new_transaction(data=data)
    payment = signed_payment(options)
    if payment_edit is not None:
        payment_edit(payment)
    response = bank.finalize(transaction_id, spc_assertion(bank.auth, options, payment=payment,
                                                           **assertion_overrides))
    assert response.status_code == 200, response.text
    assert bank.state(transaction_id) == "succeeded"
    return transaction_id, jwt_claims(response.json()["token"])


# The positive path


def test_genuine_spc_assertion_confirms_the_transaction(bank) -> None:
    transaction_id, claims = accept_spc(bank)
    assert claims["sub"] == "alice" and claims["aud"] == "merchant"
    assert claims["cred"] == b64url(bank.credential_id)
    assert claims["trans"]["id"] == transaction_id and claims["trans"]["method"] == "spc"
    assert bank.sign_count() == 1


def test_positive_unknown_client_data_and_payment_keys_are_accepted(bank) -> None:
    def add_unknown(payment):
        payment["somethingNew"] = {"x": 1}  # (the instrument's members are all checked: test_s6_instrument)

    accept_spc(bank, payment_edit=add_unknown,
               extra_client_data={"other_keys_can_be_added_here": "do not compare clientDataJSON against a template"})


def test_positive_legacy_rp_equal_to_rp_id_is_accepted(bank) -> None:
    accept_spc(bank, payment_edit=lambda p: p.update(rp=RP_ID))


# A: assertion


def test_a1_credential_not_offered_for_this_transaction(bank) -> None:
    transaction_id, options = bank.new_transaction()
    later = enroll(bank.client, bank.issuer, bank.auth)  # alice's, but enrolled after initialize
    response = bank.finalize(transaction_id, spc_assertion(bank.auth, options, credential_id=later))
    bank.assert_rejected(response, "credential_not_allowed", transaction_id)


def test_a2_credential_of_another_user_or_tenant(bank) -> None:
    bob = SoftAuthenticator()
    bobs = enroll(bank.client, bank.issuer, bob, user_id="bob", merchant_origin=OTHER_MERCHANT_ORIGIN)
    transaction_id, options = bank.new_transaction()
    response = bank.finalize(transaction_id, spc_assertion(bob, options, credential_id=bobs))
    bank.assert_rejected(response, "credential_not_allowed", transaction_id)


def test_p6_unknown_and_not_offered_credentials_get_the_same_answer(bank) -> None:
    stranger = SoftAuthenticator()
    stranger.create(rp_id=RP_ID, challenge="x" * 22, origin=ISSUER_ORIGIN, user_handle=b"u", credential_id=b"s" * 32)
    transaction_id, options = bank.new_transaction()
    unknown = bank.finalize(transaction_id, spc_assertion(stranger, options, credential_id=b"s" * 32))
    later = enroll(bank.client, bank.issuer, bank.auth)
    not_offered = bank.finalize(transaction_id, spc_assertion(bank.auth, options, credential_id=later))
    assert unknown.json() == not_offered.json() and unknown.status_code == not_offered.status_code == 400


def test_a2_revoked_credential_is_refused(bank) -> None:
    transaction_id, options = bank.new_transaction()
    bank.run(bank.issuer.store.revoke_credential, "alice", bank.credential_id)
    response = bank.finalize(transaction_id, spc_assertion(bank.auth, options))
    bank.assert_rejected(response, "credential_not_allowed", transaction_id)


def test_a3_webauthn_get_on_the_spc_endpoint(bank) -> None:
    reject_spc(bank, "unexpected_type", type="webauthn.get")


def test_a3_payment_get_on_the_fallback_endpoint(bank) -> None:
    transaction_id, options = bank.new_transaction()
    handle = options["fallback_url"].split("handle=", 1)[1]
    assertion = fallback_assertion(bank.auth, options, type="payment.get")
    response = bank.client.post("/pay/finalize", json={"handle": handle, "credential": assertion},
                                headers={"Origin": ISSUER_ORIGIN})
    bank.assert_rejected(response, "unexpected_type", transaction_id)


def test_a4_unknown_challenge(bank) -> None:
    reject_spc(bank, "challenge_mismatch", challenge="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")


@pytest.mark.parametrize("spell", [
    lambda c: c + "=",                     # padding
    lambda c: c[:-2] + "+/",               # standard alphabet
    lambda c: c[:10] + "." + c[11:],       # stray character
    lambda c: c[:-1] + {"A": "B", "Q": "R", "g": "h", "w": "x"}.get(c[-1], "B"),  # non-zero trailing bits
], ids=["padding", "plus-slash", "stray", "trailing-bits"])
def test_a4_p1_challenge_spelled_non_canonically(bank, spell) -> None:
    transaction_id, options = bank.new_transaction()
    challenge = spell(options["secure_payment_confirmation"]["challenge"])
    response = bank.finalize(transaction_id, spc_assertion(bank.auth, options, challenge=challenge))
    assert response.json()["code"] in ("invalid_client_data", "challenge_mismatch")
    bank.assert_rejected(response, response.json()["code"], transaction_id)


def test_a4_challenge_of_an_earlier_transaction(bank) -> None:
    _, earlier = bank.new_transaction()
    transaction_id, options = bank.new_transaction()
    challenge = earlier["secure_payment_confirmation"]["challenge"]
    response = bank.finalize(transaction_id, spc_assertion(bank.auth, options, challenge=challenge))
    bank.assert_rejected(response, "challenge_mismatch", transaction_id)


@pytest.mark.parametrize("origin", [
    "http://merchant.test", "https://merchant.test:8443", "https://www.merchant.test", "https://merchant.test/",
    "null", ISSUER_ORIGIN, OTHER_MERCHANT_ORIGIN,
])
def test_a4_s3_caller_origin_is_not_the_transactions_merchant(bank, origin: str) -> None:
    reject_spc(bank, "origin_mismatch", origin=origin)


def test_a4_spc_cross_origin_is_refused(bank) -> None:
    reject_spc(bank, "cross_origin_not_allowed", cross_origin=True, top_origin=MERCHANT_ORIGIN)


def test_a4_top_origin_without_cross_origin(bank) -> None:
    reject_spc(bank, "top_origin_without_cross_origin", cross_origin=False, top_origin=MERCHANT_ORIGIN)


@pytest.mark.parametrize("flow, overrides, code", [
    ("spc", {"type": "payment.get\ud800"}, "unexpected_type"),
    ("spc", {"origin": "https://merchant.test\ud800"}, "origin_mismatch"),
    ("spc", {"cross_origin": False, "top_origin": "https://\udfff.test"}, "top_origin_without_cross_origin"),
    ("fallback", {"type": "\ud800"}, "unexpected_type"),
    ("fallback", {"top_origin": "https://merchant.test\ud800"}, "top_origin_mismatch"),
], ids=["spc-type", "spc-origin", "spc-top-origin", "fallback-type", "fallback-top-origin"])
def test_h3_lone_surrogates_in_client_data_are_a_400_whose_message_encodes(bank, flow, overrides, code) -> None:
    # No signature is needed to reach these checks; the answer quotes the value with \ud800 escaped.
    transaction_id, options = bank.new_transaction()
    if flow == "spc":
        response = bank.finalize(transaction_id, spc_assertion(bank.auth, options, **overrides))
    else:
        response = _pay_finalize(bank, options, fallback_assertion(bank.auth, options, **overrides))
    bank.assert_rejected(response, code, transaction_id, sign_count=0)
    assert "\\ud" in response.json()["message"]  # quoted: the surrogate escaped, never raw


def test_a5_rp_id_hash_of_another_rp(bank) -> None:
    reject_spc(bank, "rp_id_mismatch", rp_id="other.test")


def test_a6_user_not_present(bank) -> None:
    reject_spc(bank, "user_not_present", up=False)


def test_a7_user_not_verified(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assert options["publicKey"]["userVerification"] == "required"
    reject_spc(bank, "user_not_verified", uv=False)


def test_a8_backup_state_without_eligibility(bank) -> None:
    reject_spc(bank, "invalid_backup_flags", be=False, bs=True)


def test_a8_backup_eligibility_differs_from_registration(bank) -> None:
    reject_spc(bank, "backup_eligibility_changed", be=True)


def _flip_sign_count_bit(assertion):
    data = bytearray(b64decode(assertion["response"]["authenticatorData"]))
    data[36] ^= 0x01
    assertion["response"]["authenticatorData"] = b64url(bytes(data))
    return assertion


@pytest.mark.parametrize("bend", [
    {"signature_transform": lambda s: s[:-1] + bytes([s[-1] ^ 0x01])},
    {"signature_transform": der_to_raw},
    {"signature_transform": lambda s: s + b"\x00"},
    {"signature_transform": lambda s: raw_to_der(0, 1)},
    {"signature_transform": lambda s: raw_to_der(1, 0)},
    {"signature_transform": lambda s: b""},
    {"sign_with": generate_private_key(ES256)},
], ids=["flipped-bit", "raw-r-s", "der-trailing-bytes", "r-zero", "s-zero", "empty", "another-key"])
def test_a9_signature_variants(bank, bend) -> None:
    reject_spc(bank, "invalid_signature", **bend)


def test_a9_flipped_bit_in_authenticator_data(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assertion = _flip_sign_count_bit(spc_assertion(bank.auth, options))
    bank.assert_rejected(bank.finalize(transaction_id, assertion), "invalid_signature", transaction_id, sign_count=0)


def test_a9_flipped_bit_in_client_data_json(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assertion = spc_assertion(bank.auth, options, extra_client_data={"other_keys_can_be_added_here": "a"})
    raw = b64decode(assertion["response"]["clientDataJSON"]).replace(b'"a"}', b'"c"}')  # 'a' ^ 0x02
    assertion["response"]["clientDataJSON"] = b64url(raw)
    bank.assert_rejected(bank.finalize(transaction_id, assertion), "invalid_signature", transaction_id, sign_count=0)


def test_a9_client_data_edited_after_signing(bank) -> None:
    """The page showed 1.00 and the authenticator signed 1.00; the total is edited to pass the S5 check."""
    transaction_id, options = bank.new_transaction()
    payment = signed_payment(options)
    payment["total"]["value"] = "1.00"
    assertion = spc_assertion(bank.auth, options, payment=payment)
    edited = edit_client_data(assertion, lambda data: data["payment"]["total"].update(value="100.00"))
    bank.assert_rejected(bank.finalize(transaction_id, edited), "invalid_signature", transaction_id, sign_count=0)


def test_a10_sign_count_not_greater_than_stored(bank) -> None:
    accept_spc(bank)  # stored count is now 1
    reject_spc(bank, "sign_count_not_increased", sign_count=1)
    reject_spc(bank, "sign_count_not_increased", sign_count=0)


def test_a10_both_counts_zero_is_fine(tmp_path) -> None:
    with make_bank(tmp_path) as bank:
        bank.auth.counter_increment = 0
        accept_spc(bank)
        accept_spc(bank)
        assert bank.sign_count() == 0


async def test_a10_parallel_submits_of_one_assertion_exactly_one_succeeds(tmp_path) -> None:
    with make_bank(tmp_path) as bank:
        transaction_id, options = bank.new_transaction()
        assertion = spc_assertion(bank.auth, options)
        app = bank.issuer.app
    transport = httpx.ASGITransport(app=app)  # runs no lifespan: the test enters it
    async with bank.issuer.lifespan(), httpx.AsyncClient(transport=transport, base_url=ISSUER_ORIGIN) as client:
        body = {"transaction_id": transaction_id, "credential": assertion}
        responses = await asyncio.gather(*(
            client.post("/transaction/finalize", json=body, headers={"Origin": MERCHANT_ORIGIN}) for _ in range(6)
        ))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 1, [r.text for r in responses]
    assert all(400 <= s < 500 for s in statuses if s != 200)
    assert {r.json()["code"] for r in responses if r.status_code != 200} <= {
        "challenge_used", "credential_in_use", "transaction_not_pending", "transaction_already_finalized",
        "sign_count_not_increased",
    }


@pytest.mark.parametrize("bend,code", [
    ({"trailing_auth_data": b"\x00"}, "invalid_authenticator_data"),
    ({"ed": True}, "invalid_authenticator_data"),
    ({"authenticator_extensions": cbor2.dumps({"credProtect": 1}), "ed": False}, "invalid_authenticator_data"),
])
def test_a11_malformed_authenticator_data(bank, bend, code: str) -> None:
    reject_spc(bank, code, **bend)


def test_a12_failed_business_check_leaves_credential_state_alone(bank) -> None:
    accept_spc(bank)
    before = bank.run(bank.issuer.store.get_credential, bank.credential_id)
    reject_spc(bank, "total_mismatch", payment_edit=lambda p: p["total"].update(value="1.00"))
    after = bank.run(bank.issuer.store.get_credential, bank.credential_id)
    assert (after.sign_count, after.backed_up, after.last_used_at) == \
        (before.sign_count, before.backed_up, before.last_used_at)


def test_user_handle_of_another_user_is_refused(bank) -> None:
    reject_spc(bank, "user_handle_mismatch", user_handle=b"someone-else")


def test_absent_user_handle_is_accepted(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assertion = spc_assertion(bank.auth, options)
    assertion["response"]["userHandle"] = None  # not signed; browsers may omit it
    assert bank.finalize(transaction_id, assertion).status_code == 200


# S: SPC payment fields


def test_s1_payment_missing(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assertion = bank.auth.get(credential_id=bank.credential_id, challenge=options["publicKey"]["challenge"],
                              origin=MERCHANT_ORIGIN, type="payment.get", payment=None)
    bank.assert_rejected(bank.finalize(transaction_id, assertion), "payment_data_missing", transaction_id)


@pytest.mark.parametrize("payment", ["x", [], 1, None])
def test_s1_payment_not_an_object(bank, payment) -> None:
    transaction_id, options = bank.new_transaction()
    raw = build_client_data_json(type="payment.get", challenge=options["publicKey"]["challenge"],
                                 origin=MERCHANT_ORIGIN, cross_origin=False, top_origin=None,
                                 extra={"payment": payment})
    assertion = bank.auth.get(credential_id=bank.credential_id, challenge="", origin="", client_data_json=raw)
    bank.assert_rejected(bank.finalize(transaction_id, assertion), "invalid_client_data", transaction_id)


@pytest.mark.parametrize("edit,code", [
    (lambda p: p.update(rpId="other.test"), "payment_rp_id_mismatch"),
    (lambda p: p.update(rpId="ISSUER.TEST"), "payment_rp_id_mismatch"),
    (lambda p: p.pop("rpId"), "payment_data_invalid"),
    (lambda p: p.update(rp="other.test"), "payment_rp_id_mismatch"),
], ids=["other", "case", "missing", "legacy-rp-differs"])
def test_s2_payment_rp_id(bank, edit, code: str) -> None:
    reject_spc(bank, code, payment_edit=edit)


@pytest.mark.parametrize("top_origin", [OTHER_MERCHANT_ORIGIN, "https://merchant.test/", ISSUER_ORIGIN, "null"])
def test_s3_payment_top_origin(bank, top_origin: str) -> None:
    reject_spc(bank, "payment_top_origin_mismatch", payment_edit=lambda p: p.update(topOrigin=top_origin))


@pytest.mark.parametrize("edit", [
    lambda p: p.update(payeeName="Evil Shop"),
    lambda p: p.pop("payeeName"),
    lambda p: p.update(payeeOrigin=OTHER_MERCHANT_ORIGIN),
    lambda p: p.pop("payeeOrigin"),
], ids=["name-changed", "name-dropped", "origin-changed", "origin-dropped"])
def test_s4_payee(bank, edit) -> None:
    reject_spc(bank, "payee_mismatch", payment_edit=edit)


def test_s4_payee_added_that_was_not_initialized(bank) -> None:
    data = {k: v for k, v in TRANSACTION_DATA.items() if k != "payee_origin"}
    reject_spc(bank, "payee_mismatch", data=data, payment_edit=lambda p: p.update(payeeOrigin=MERCHANT_ORIGIN))


@pytest.mark.parametrize("total", [
    {"value": "1.00", "currency": "EUR"},
    {"value": "100", "currency": "EUR"},
    {"value": "100.0", "currency": "EUR"},
    {"value": "1e2", "currency": "EUR"},
    {"value": "-1", "currency": "EUR"},
    {"value": "-100.00", "currency": "EUR"},
    {"value": "100.00", "currency": "eur"},
    {"value": "100.00", "currency": "USD"},
    {"value": 100, "currency": "EUR"},
    {"currency": "EUR"},
    {"value": "100.00"},
], ids=["1.00", "100", "100.0", "1e2", "-1", "-100.00", "eur", "USD", "number", "no-value", "no-currency"])
def test_s5_total_tampered(bank, total) -> None:
    reject_spc(bank, "total_mismatch", payment_edit=lambda p: p.update(total=total))


def test_s5_total_not_an_object(bank) -> None:
    reject_spc(bank, "payment_data_invalid", payment_edit=lambda p: p.update(total="100.00 EUR"))


@pytest.mark.parametrize("edit", [
    lambda p: p["instrument"].update(displayName="Other Card ****9999"),
    lambda p: p["instrument"].update(icon="https://evil.test/card.png"),
    lambda p: p["instrument"].update(icon=""),
    lambda p: p["instrument"].pop("icon"),
    # Chrome shows an instrument "details" line and signs it: the merchant's page may not add one.
    lambda p: p["instrument"].update(details="Refund: nothing will be charged"),
    lambda p: p["instrument"].update(subtitle="x"),
    lambda p: p["instrument"].update(iconMustBeShown="yes"),
], ids=["name", "icon", "icon-dropped", "icon-missing", "details-added", "unknown-member", "icon-must-be-shown-text"])
def test_s6_instrument(bank, edit) -> None:
    reject_spc(bank, "instrument_mismatch", payment_edit=edit)


@pytest.mark.parametrize("flag", [True, False])
def test_s6_instrument_as_chrome_signs_it_with_icon_must_be_shown(bank, flag) -> None:
    accept_spc(bank, payment_edit=lambda p: p["instrument"].update(iconMustBeShown=flag))


LOGOS = [{"url": "https://issuer.test/network.png", "label": "Network"},
         {"url": "https://issuer.test/acquirer.png", "label": "Acquirer"}]


@pytest.mark.parametrize("shown", [LOGOS, LOGOS[:1], LOGOS[1:], [], None], ids=["all", "first", "second", "none",
                                                                               "missing"])
def test_s7_logos_ordered_subset_is_accepted(bank, shown) -> None:
    def edit(payment):
        if shown is None:
            payment.pop("paymentEntitiesLogos")
        else:
            payment["paymentEntitiesLogos"] = shown

    accept_spc(bank, data={**TRANSACTION_DATA, "payment_entities_logos": LOGOS}, payment_edit=edit)


# Chrome signs a logo it could not download as {"url": "", "label": <the label sent>}.
@pytest.mark.parametrize("shown", [
    [{"url": "", "label": "Network"}, LOGOS[1]], [LOGOS[0], {"url": "", "label": "Acquirer"}],
    [{"url": "", "label": "Acquirer"}],
], ids=["first-failed", "second-failed", "only-second-failed"])
def test_s7_logo_that_failed_to_load_is_accepted(bank, shown) -> None:
    accept_spc(bank, data={**TRANSACTION_DATA, "payment_entities_logos": LOGOS},
               payment_edit=lambda p: p.update(paymentEntitiesLogos=shown))


@pytest.mark.parametrize("shown", [
    LOGOS[::-1], [LOGOS[0], LOGOS[0]], [{"url": "https://evil.test/x.png", "label": "Network"}],
    [{**LOGOS[0], "label": "Other"}], "logos",
    [{"url": "", "label": "Other"}], [{"url": "", "label": "Acquirer"}, {"url": "", "label": "Network"}],
    [{"url": "", "label": "Network", "extra": 1}], [{"url": None, "label": "Network"}],
], ids=["reversed", "duplicated", "unknown-url", "other-label", "not-a-list", "failed-other-label",
        "failed-reversed", "failed-extra-member", "failed-null-url"])
def test_s7_logos_not_an_ordered_subset(bank, shown) -> None:
    reject_spc(bank, "logos_mismatch", data={**TRANSACTION_DATA, "payment_entities_logos": LOGOS},
               payment_edit=lambda p: p.update(paymentEntitiesLogos=shown))


def test_s7_logos_shown_when_none_were_sent(bank) -> None:
    reject_spc(bank, "logos_mismatch", payment_edit=lambda p: p.update(paymentEntitiesLogos=LOGOS[:1]))


def test_s9_extension_outputs_are_ignored(bank) -> None:
    accept_spc(bank, client_extension_results={"appid": True, "credProps": {"rk": True}, "largeBlob": {"blob": "x"},
                                               "payment": {"isPayment": False}},
               authenticator_extensions=cbor2.dumps({"credProtect": 3}))


def _with_bbk(options, bbk: BrowserBoundKey, *, sign: bytes | None = None, key: bytes | None = None,
              omit_key: bool = False, omit_signature: bool = False):
    """Build payment with browserBoundPublicKey and a signature over the final clientDataJSON bytes."""
    payment = signed_payment(options)
    if not omit_key:
        payment["browserBoundPublicKey"] = b64url(bbk.cose_public_key() if key is None else key)
    raw = build_client_data_json(type="payment.get", challenge=options["publicKey"]["challenge"],
                                 origin=MERCHANT_ORIGIN, cross_origin=False, top_origin=None, payment=payment)
    signature = bbk.sign(raw if sign is None else sign)
    results = {} if omit_signature else {"payment": {"browserBoundSignature": {"signature": b64url(signature)}}}
    return raw, results


def test_s10_valid_browser_bound_key_is_recorded(bank) -> None:
    bbk = BrowserBoundKey()
    transaction_id, options = bank.new_transaction()
    raw, results = _with_bbk(options, bbk)
    assertion = bank.auth.get(credential_id=bank.credential_id, challenge="", origin="", client_data_json=raw,
                              client_extension_results=results)
    assert bank.finalize(transaction_id, assertion).status_code == 200
    stored = bank.run(bank.issuer.store.get_transaction, "merchant", transaction_id)
    assert stored.browser_bound_public_key == bbk.cose_public_key()


@pytest.mark.parametrize("bend", [
    {"sign": b"something else"},
    {"omit_signature": True},
    {"omit_key": True},
    {"key": b"\xa1\x01\x02"},
    {"key": BrowserBoundKey().cose_public_key()},
], ids=["signature-over-other-data", "signature-missing", "key-missing", "malformed-key", "other-key"])
def test_s10_browser_bound_key_that_does_not_verify_is_refused(bank, bend) -> None:
    transaction_id, options = bank.new_transaction()
    raw, results = _with_bbk(options, BrowserBoundKey(), **bend)
    assertion = bank.auth.get(credential_id=bank.credential_id, challenge="", origin="", client_data_json=raw,
                              client_extension_results=results)
    bank.assert_rejected(bank.finalize(transaction_id, assertion), "browser_bound_key_invalid", transaction_id,
                         sign_count=0)


def test_s10_passkey_signature_is_required_even_with_a_valid_browser_bound_key(bank) -> None:
    transaction_id, options = bank.new_transaction()
    raw, results = _with_bbk(options, BrowserBoundKey())
    assertion = bank.auth.get(credential_id=bank.credential_id, challenge="", origin="", client_data_json=raw,
                              client_extension_results=results, signature_transform=lambda s: b"")
    bank.assert_rejected(bank.finalize(transaction_id, assertion), "invalid_signature", transaction_id)


# P: parsing


def test_p1_credential_ids_must_be_canonical_base64url(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assertion = spc_assertion(bank.auth, options)
    assertion["rawId"] = assertion["id"] = assertion["rawId"] + "="
    bank.assert_rejected(bank.finalize(transaction_id, assertion), "invalid_credential", transaction_id)


def test_p1_user_handle_must_be_canonical_base64url(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assertion = spc_assertion(bank.auth, options)
    assertion["response"]["userHandle"] += "="
    bank.assert_rejected(bank.finalize(transaction_id, assertion), "invalid_credential", transaction_id)


@pytest.mark.parametrize("raw", [
    lambda c: b'{"type":"payment.get","type":"webauthn.get","challenge":"%s","origin":"%s"}' % (
        c.encode(), MERCHANT_ORIGIN.encode()),
    lambda c: b'{"type":"payment.get","challenge":"%s","origin":"\xff"}' % c.encode(),
    lambda c: b'{"type":"payment.get","challenge":"%s","origin":"%s","n":NaN}' % (c.encode(),
                                                                                  MERCHANT_ORIGIN.encode()),
    lambda c: b'{"type":"payment.get","challenge":%s,"origin":"%s"}' % (b"123", MERCHANT_ORIGIN.encode()),
    lambda c: b'["payment.get"]',
], ids=["duplicate-type", "invalid-utf8", "nan", "challenge-number", "array"])
def test_p2_client_data_json_strict(bank, raw) -> None:
    transaction_id, options = bank.new_transaction()
    client_data = raw(options["publicKey"]["challenge"])
    assertion = bank.auth.get(credential_id=bank.credential_id, challenge="", origin="", client_data_json=client_data)
    bank.assert_rejected(bank.finalize(transaction_id, assertion), "invalid_client_data", transaction_id)


@pytest.mark.parametrize("credential", [[], "x", {"id": "AA", "rawId": "AA", "type": "public-key"},
                                        {"id": "AA", "rawId": "AA", "type": "public-key", "response": []}])
def test_p2_wrong_json_types_in_the_credential(bank, credential) -> None:
    transaction_id, _ = bank.new_transaction()
    bank.assert_rejected(bank.finalize(transaction_id, credential), "invalid_credential", transaction_id)


def test_p2_duplicate_keys_in_the_request_body(bank) -> None:
    transaction_id, _ = bank.new_transaction()
    body = f'{{"transaction_id": "{transaction_id}", "transaction_id": "x", "credential": {{}}}}'
    response = bank.client.post("/transaction/finalize", content=body,
                                headers={"apiKey": "merchant-api-key-0123456789abcdef",
                                         "Content-Type": "application/json"})
    bank.assert_rejected(response, "invalid_request", transaction_id)


# H6: the card a payment is for


def test_h6_only_the_named_cards_credentials_are_offered_shown_accepted_and_named_in_the_token(bank) -> None:
    visa = enroll(bank.client, bank.issuer, bank.auth, user_id="bob", instrument_id="card-visa",
                  instrument_name="Visa ****1111", instrument_icon="https://issuer.test/visa.png")
    bank.clock.advance(1)
    master = enroll(bank.client, bank.issuer, bank.auth, user_id="bob", instrument_id="card-mc",
                    instrument_name="Mastercard ****2222", instrument_icon="https://issuer.test/mc.png")

    # Initialize names the card: only its passkey is offered, with its name and art.
    transaction_id, options = bank.new_transaction(user_id="bob", instrument_id="card-visa")
    spc = options["secure_payment_confirmation"]
    assert spc["credentialIds"] == [b64url(visa)] and options["publicKey"]["allowCredentials"][0]["id"] == b64url(visa)
    assert (spc["instrument"]["displayName"], spc["instrument"]["icon"]) == ("Visa ****1111", "https://issuer.test/visa.png")
    # The other card's passkey confirms nothing here, even over a dialog that showed this card.
    response = bank.finalize(transaction_id, spc_assertion(bank.auth, options, credential_id=master))
    bank.assert_rejected(response, "credential_not_allowed", transaction_id)
    # The named card's passkey does, and the token says which card.
    token = bank.finalize(transaction_id, spc_assertion(bank.auth, options, credential_id=visa)).json()["token"]
    assert jwt_claims(token)["trans"]["instrument_id"] == "card-visa"
    listed = bank.client.get("/transactions", params={"user_id": "bob"}, headers={"apiKey": API_KEY}).json()
    assert listed["transactions"][0]["instrument_id"] == "card-visa"

    # Without a card, a user with two cards is offered nothing (the answer for a user without credentials, S11),
    # and so is a card the user has no passkey for.
    _, unnamed = bank.new_transaction(user_id="bob")
    _, unknown_card = bank.new_transaction(user_id="bob", instrument_id="card-amex")
    _, nobody = bank.new_transaction(user_id="nobody")
    for answer in (unnamed, unknown_card, nobody):
        assert answer["secure_payment_confirmation"]["credentialIds"] == []
        assert answer["secure_payment_confirmation"]["instrument"] is None
    # A Hanko-style call without a card still works for a user with one card (alice).
    _, one_card = bank.new_transaction()
    assert one_card["secure_payment_confirmation"]["credentialIds"] == [b64url(bank.credential_id)]


def test_h6_the_verifier_refuses_a_credential_enrolled_for_another_card() -> None:
    auth = SoftAuthenticator()
    auth.create(rp_id=RP_ID, challenge="x", origin=ISSUER_ORIGIN, user_handle=b"handle", credential_id=b"c" * 32)
    public_key = cose_key(auth.credentials[b"c" * 32].private_key.public_key())
    expected = _expected(instrument_id="card-visa")
    payment = signed_payment(payment_request_options(expected))
    for card, outcome in (("card-mc", "credential_not_allowed"), ("card-visa", None)):
        stored = Credential(
            credential_id=b"c" * 32, user_id="alice", public_key=public_key, sign_count=0, alg=-7,
            transports=("internal",), aaguid="0" * 36, attestation_format="none", backup_eligible=False,
            backed_up=False, instrument_name="Fancy Card ****1234", instrument_icon="https://issuer.test/card.png",
            enrolled_origin=MERCHANT_ORIGIN, created_at=0.0, instrument_id=card,
        )
        assertion = auth.get(credential_id=b"c" * 32, challenge=expected.challenge, origin=MERCHANT_ORIGIN,
                             type="payment.get", payment=payment, sign_count=0)
        if outcome is None:
            assert verify_payment_assertion(credential=assertion, expected=expected, stored_credential=stored)
        else:
            with pytest.raises(AssertionRejected) as refused:
                verify_payment_assertion(credential=assertion, expected=expected, stored_credential=stored)
            assert refused.value.code == outcome


# The fallback (webauthn.get in the issuer iframe)


def _pay_finalize(bank, options, assertion, *, origin: str = ISSUER_ORIGIN):
    handle = options["fallback_url"].split("handle=", 1)[1]
    return bank.client.post("/pay/finalize", json={"handle": handle, "credential": assertion},
                            headers={"Origin": origin})


def test_fallback_genuine_assertion_confirms_with_method_fallback(bank) -> None:
    transaction_id, options = bank.new_transaction()
    response = _pay_finalize(bank, options, fallback_assertion(bank.auth, options))
    assert response.status_code == 200, response.text
    claims = jwt_claims(response.json()["token"])
    assert claims["trans"] == {"id": transaction_id, "hash": options["transaction_hash"], "method": "fallback",
                               "instrument_id": "Test Visa ****1234"}
    assert bank.state(transaction_id) == "succeeded"


@pytest.mark.parametrize("bend,code", [
    ({"origin": MERCHANT_ORIGIN}, "origin_mismatch"),
    ({"top_origin": OTHER_MERCHANT_ORIGIN}, "top_origin_mismatch"),
    ({"top_origin": None}, "cross_origin_required"),
    ({"top_origin": MERCHANT_ORIGIN, "cross_origin": False}, "top_origin_without_cross_origin"),
    ({"top_origin": MERCHANT_ORIGIN, "cross_origin": None}, "top_origin_without_cross_origin"),
    ({"uv": False}, "user_not_verified"),
], ids=["origin-merchant", "top-other-merchant", "top-level", "top-without-cross", "cross-missing", "uv"])
def test_a4_fallback_origin_variants(bank, bend, code: str) -> None:
    transaction_id, options = bank.new_transaction()
    response = _pay_finalize(bank, options, fallback_assertion(bank.auth, options, **bend))
    bank.assert_rejected(response, code, transaction_id, sign_count=0)


def test_w6_fallback_finalize_only_from_the_issuer_iframe(bank) -> None:
    transaction_id, options = bank.new_transaction()
    response = _pay_finalize(bank, options, fallback_assertion(bank.auth, options), origin=MERCHANT_ORIGIN)
    bank.assert_rejected(response, "origin_not_allowed", transaction_id, status=403)


def test_fallback_handle_tampered_is_refused(bank) -> None:
    transaction_id, options = bank.new_transaction()
    handle = options["fallback_url"].split("handle=", 1)[1]
    response = bank.client.post("/pay/finalize", headers={"Origin": ISSUER_ORIGIN},
                                json={"handle": handle[:-2] + "xx", "credential": fallback_assertion(bank.auth,
                                                                                                     options)})
    bank.assert_rejected(response, "invalid_token", transaction_id, status=401)


# The verifier as a library


def _expected(**overrides) -> ExpectedPayment:
    values = dict(
        challenge="Y2hhbGxlbmdlLWNoYWxsZW5nZS0zMg", rp_id=RP_ID, issuer_origin=ISSUER_ORIGIN,
        merchant_origin=MERCHANT_ORIGIN, user_id="alice", user_handle=b"handle", credential_ids=(b"c" * 32,),
        amount="5.00", currency="USD", payee_name=None, payee_origin=MERCHANT_ORIGIN,
        instrument_name="Fancy Card ****1234", instrument_icon="https://issuer.test/card.png",
        logos=(PaymentEntityLogo("https://issuer.test/n.png", "N"),), timeout_ms=7_200_000, show_opt_out=True,
    )
    values.update(overrides)
    return ExpectedPayment(**values)


def test_expected_payment_round_trips_through_json() -> None:
    expected = _expected()
    assert ExpectedPayment.from_json(json.loads(json.dumps(expected.to_json()))) == expected


def test_request_options_carry_exactly_what_is_verified() -> None:
    options = payment_request_options(_expected())
    spc = options["secure_payment_confirmation"]
    assert spc["timeout"] == options["publicKey"]["timeout"] == 3_600_000  # SPC: at most one hour
    assert spc["instrument"] == {"displayName": "Fancy Card ****1234", "icon": "https://issuer.test/card.png",
                                 "iconMustBeShown": True}
    assert "payeeName" not in spc and spc["payeeOrigin"] == MERCHANT_ORIGIN and spc["showOptOut"] is True
    assert spc["credentialIds"] == [b64url(b"c" * 32)] == [c["id"] for c in options["publicKey"]["allowCredentials"]]
    assert options["total"] == {"currency": "USD", "value": "5.00"}


def test_the_browsers_own_client_data_shape_verifies() -> None:
    """The clientDataJSON captured from Chromium (docs/browser-testing.md), re-signed for this test's key."""
    auth = SoftAuthenticator()
    auth.create(rp_id=RP_ID, challenge="x", origin=ISSUER_ORIGIN, user_handle=b"handle", credential_id=b"c" * 32)
    private = auth.credentials[b"c" * 32].private_key
    raw = (b'{"type":"payment.get","challenge":"Y2hhbGxlbmdlLWNoYWxsZW5nZS0zMg","origin":"https://merchant.test",'
           b'"crossOrigin":false,"payment":{"rpId":"issuer.test","topOrigin":"https://merchant.test",'
           b'"payeeOrigin":"https://merchant.test","paymentEntitiesLogos":[],"total":{"value":"5.00",'
           b'"currency":"USD"},"instrument":{"icon":"https://issuer.test/card.png",'
           b'"displayName":"Fancy Card ****1234"}},"other_keys_can_be_added_here":"do not compare"}')
    assertion = auth.get(credential_id=b"c" * 32, challenge="", origin="", client_data_json=raw)
    stored = Credential(
        credential_id=b"c" * 32, user_id="alice", public_key=cose_key(private.public_key()), sign_count=0, alg=-7,
        transports=("internal",), aaguid="0" * 36, attestation_format="none", backup_eligible=False,
        backed_up=False, instrument_name="Fancy Card ****1234", instrument_icon="https://issuer.test/card.png",
        enrolled_origin=MERCHANT_ORIGIN, created_at=0.0,
    )
    verified = verify_payment_assertion(credential=assertion, expected=_expected(logos=()), stored_credential=stored)
    assert verified.method == "spc" and verified.sign_count == 1 and verified.origin == MERCHANT_ORIGIN
    # Only this library's exceptions leave the verifier, whatever the input.
    for hostile in (None, {"id": 1}, {**assertion, "response": {**assertion["response"], "signature": "!"}}):
        with pytest.raises(SPCEmbedError):
            verify_payment_assertion(credential=hostile, expected=_expected(), stored_credential=stored)
    with pytest.raises((AssertionRejected, InvalidRequest)):
        verify_payment_assertion(credential=assertion, expected=_expected(amount="5.0"), stored_credential=stored)
