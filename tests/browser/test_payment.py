"""Paying with SPC on the merchant page, in real Chromium, across two HTTPS sites.

Each test enrols a new cardholder in the issuer iframe (the virtual
authenticator then holds a real passkey), has the shop's backend initialize a
transaction with the real issuer, and clicks Pay: ``widget/spc-merchant.js``
runs ``PaymentRequest`` with exactly the data initialize returned. The SPC
dialog is answered by ``Page.setSPCTransactionMode``. Outcomes are checked on
every side: the page's typed result, the JWT (PyJWT against the JWKS), and
the issuer's database.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from spc_embed.transactions import transaction_hash

from .harness import TestCA, set_spc_mode
from .sites import (
    Sites,
    enrol,
    finalize,
    initialize,
    issuer_post,
    pay,
    read_store,
    serve_sites,
    transaction_state,
    verify_result,
)
from .test_enrollment import WITHOUT_NATIVE_JSON


@pytest.fixture(scope="module")
def sites(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    with serve_sites(test_ca, tmp_path_factory.mktemp("issuer") / "issuer.db") as served:
        yield served


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def client_data(credential: dict[str, Any]) -> dict[str, Any]:
    return json.loads(b64decode(credential["response"]["clientDataJSON"]))


def edited(credential: dict[str, Any], edit: Any) -> dict[str, Any]:
    """The credential with its clientDataJSON changed after signing."""
    data = client_data(credential)
    edit(data)
    changed = json.loads(json.dumps(credential))
    encoded = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()
    changed["response"]["clientDataJSON"] = encoded
    return changed


def assert_rejected(response: Any, code: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code, response.text


def test_spc_payment_gives_verifiable_token(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)
    set_spc_mode(authenticator.cdp, "autoAccept")

    result = pay(page)

    assert result["outcome"] == "confirmed", result
    claims = verify_result(sites, result["token"])
    transaction_id = init["transaction_id"]
    assert claims["aud"] == "merchant" and claims["sub"] == user_id
    assert claims["iss"] == sites.issuer.base_url
    assert claims["trans"]["id"] == transaction_id
    assert claims["trans"]["method"] == "spc"
    data = {"amount": "100.00", "currency": "EUR", "payee_name": "Test Shop", "payee_origin": sites.merchant,
            "order": "A-1042"}
    assert claims["trans"]["hash"] == transaction_hash(data) == init["transaction_hash"]
    assert claims["cred"] == result["credential"]["id"] == init["secure_payment_confirmation"]["credentialIds"][0]
    # What the user saw and signed: this shop, this amount, this card.
    signed = client_data(result["credential"])
    assert signed["type"] == "payment.get" and signed["origin"] == sites.merchant
    assert signed["payment"]["total"] == {"currency": "EUR", "value": "100.00"}
    assert signed["payment"]["payeeOrigin"] == sites.merchant
    assert transaction_state(sites, transaction_id) == "succeeded"


def test_spc_payment_without_native_to_json(context: BrowserContext, page: Page, sites: Sites) -> None:
    # Browsers without PublicKeyCredential.toJSON(): webauthn-json.js serializes by hand.
    context.add_init_script(WITHOUT_NATIVE_JSON)
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)
    set_spc_mode(authenticator.cdp, "autoAccept")

    result = pay(page)

    assert page.evaluate("() => typeof PublicKeyCredential.prototype.toJSON") == "undefined"
    assert result["outcome"] == "confirmed", result
    assert verify_result(sites, result["token"])["trans"]["id"] == init["transaction_id"]
    assert transaction_state(sites, init["transaction_id"]) == "succeeded"


# A browser-bound key's signature comes only from getClientExtensionResults(): Chromium's toJSON() drops it.
WITH_PAYMENT_OUTPUT = """
const original = PublicKeyCredential.prototype.getClientExtensionResults;
PublicKeyCredential.prototype.getClientExtensionResults = function () {
  return {...original.call(this), payment: {browserBoundSignature: {signature: new Uint8Array([1, 2, 3]).buffer}}};
};
"""


def test_the_payment_extension_output_reaches_the_issuer(context: BrowserContext, page: Page, sites: Sites) -> None:
    context.add_init_script(WITH_PAYMENT_OUTPUT)
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)
    set_spc_mode(authenticator.cdp, "autoAccept")

    result = pay(page)

    sent = result["credential"]["clientExtensionResults"]
    assert sent["payment"] == {"browserBoundSignature": {"signature": "AQID"}}, sent
    # A signature without the key in the signed client data: the issuer saw it, and refuses (S10).
    assert result["outcome"] == "error" and result["code"] == "browser_bound_key_invalid", result
    assert transaction_state(sites, init["transaction_id"]) == "pending"


def test_user_cancel_reports_cancelled_and_transaction_stays_pending(context: BrowserContext, page: Page,
                                                                     sites: Sites) -> None:
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)
    set_spc_mode(authenticator.cdp, "autoReject")

    result = pay(page)

    # Chromium rejects show() with AbortError "User closed the Payment Request UI."
    assert result["outcome"] == "cancelled", result
    assert result["code"] == "AbortError"
    assert "credential" not in result and "token" not in result
    assert transaction_state(sites, init["transaction_id"]) == "pending"

    # Still pending means still payable: the user changes their mind.
    set_spc_mode(authenticator.cdp, "autoAccept")
    again = pay(page)
    assert again["outcome"] == "confirmed", again
    assert transaction_state(sites, init["transaction_id"]) == "succeeded"


def test_authenticate_another_way(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)
    set_spc_mode(authenticator.cdp, "autoChooseToAuthAnotherWay")

    result = pay(page)

    # Chromium (and the WPT for this mode) reject show() with NotAllowedError.
    assert result["outcome"] == "authenticate_another_way", result
    assert result["code"] == "NotAllowedError"
    assert transaction_state(sites, init["transaction_id"]) == "pending"


def test_opt_out_is_recorded_by_the_issuer(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id, show_opt_out=True)
    assert init["secure_payment_confirmation"]["showOptOut"] is True
    set_spc_mode(authenticator.cdp, "autoOptOut")

    result = pay(page, opt_out=True)

    assert result["outcome"] == "opted_out", result
    assert result["code"] == "OptOutError"
    assert result["recorded"] is True
    opt_outs = read_store(sites, lambda store: store.list_opt_outs(user_id))
    assert [(o.tenant_id, o.transaction_id) for o in opt_outs] == [("merchant", init["transaction_id"])]
    assert opt_outs[0].reported_by == f"origin {sites.merchant}"
    assert opt_outs[0].credential_ids == tuple(init["secure_payment_confirmation"]["credentialIds"])
    record = read_store(sites, lambda store: store.get_transaction("merchant", init["transaction_id"]))
    assert (record.state, record.failure_reason) == ("failed", "opt_out")

    # The issuer no longer offers this passkey to this merchant, and the script says so without a dialog.
    later = initialize(page, user_id)
    assert later["secure_payment_confirmation"]["credentialIds"] == []
    set_spc_mode(authenticator.cdp, "autoAccept")
    unavailable = pay(page)
    assert unavailable == {"outcome": "unavailable", "code": "no_credentials",
                           "message": "no passkey is set up for this card"}


def test_page_showing_another_total_is_rejected(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id, amount="100.00")
    # A compromised or buggy page shows the user 1.00 for a 100.00 transaction.
    page.evaluate("() => { window.init.total = {...window.init.total, value: '1.00'}; }")
    set_spc_mode(authenticator.cdp, "autoAccept")

    result = pay(page)

    assert result["outcome"] == "error", result
    assert result["code"] == "total_mismatch"
    assert client_data(result["credential"])["payment"]["total"] == {"currency": "EUR", "value": "1.00"}
    assert transaction_state(sites, init["transaction_id"]) == "pending"

    # Rewriting what was signed to say 100.00 makes the payment checks pass but breaks the signature.
    forged = edited(result["credential"], lambda data: data["payment"]["total"].update(value="100.00"))
    assert_rejected(finalize(sites, init["transaction_id"], forged), "invalid_signature")
    assert transaction_state(sites, init["transaction_id"]) == "pending"


def test_client_data_edited_after_signing_is_rejected(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)
    set_spc_mode(authenticator.cdp, "autoAccept")
    genuine = pay(page, finalize=False)
    assert genuine["outcome"] == "confirmed" and "token" not in genuine, genuine
    credential, transaction_id = genuine["credential"], init["transaction_id"]

    edits = [
        (lambda d: d["payment"]["total"].update(value="1.00"), "total_mismatch"),
        (lambda d: d["payment"].update(payeeName="Somebody Else"), "payee_mismatch"),
        (lambda d: d["payment"].update(payeeOrigin="https://evil.test"), "payee_mismatch"),
        (lambda d: d["payment"]["instrument"].update(displayName="Other Card ****0000"), "instrument_mismatch"),
        # Every checked field intact, one extra member: only the signature notices.
        (lambda d: d.update(note="edited"), "invalid_signature"),
    ]
    for edit, code in edits:
        assert_rejected(finalize(sites, transaction_id, edited(credential, edit)), code)
        assert transaction_state(sites, transaction_id) == "pending"

    # The unedited assertion still confirms: nothing was consumed by the rejections.
    accepted = finalize(sites, transaction_id, credential)
    assert accepted.status_code == 200, accepted.text
    assert verify_result(sites, accepted.json()["token"])["trans"]["id"] == transaction_id
    assert transaction_state(sites, transaction_id) == "succeeded"


def test_assertion_for_another_transaction_is_rejected(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator, user_id = enrol(context, page, sites)
    first = initialize(page, user_id, amount="100.00")
    second = initialize(page, user_id, amount="100.00")  # same data, its own challenge
    set_spc_mode(authenticator.cdp, "autoAccept")
    genuine = pay(page, finalize=False)  # the page pays the second one
    assert genuine["outcome"] == "confirmed", genuine

    assert_rejected(finalize(sites, first["transaction_id"], genuine["credential"]), "challenge_mismatch")
    assert transaction_state(sites, first["transaction_id"]) == "pending"
    assert transaction_state(sites, second["transaction_id"]) == "pending"

    # The merchant's backend posts it for the right transaction (its API key stays server-side).
    accepted = page.evaluate(
        """(body) => fetch("/api/finalize", {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify(body)}).then(async (r) => [r.status, await r.json()])""",
        {"transaction_id": second["transaction_id"], "credential": genuine["credential"]},
    )
    assert accepted[0] == 200, accepted
    assert verify_result(sites, accepted[1]["token"])["trans"]["id"] == second["transaction_id"]
    assert transaction_state(sites, first["transaction_id"]) == "pending"


def test_replayed_assertion_is_rejected(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)
    set_spc_mode(authenticator.cdp, "autoAccept")
    result = pay(page)
    assert result["outcome"] == "confirmed", result
    credential, transaction_id = result["credential"], init["transaction_id"]
    sign_count = read_store(sites, lambda store: store.get_credential(b64decode(credential["rawId"]))).sign_count

    # Again on the same transaction, from the merchant's backend and from the page (cross-origin, no key).
    assert_rejected(finalize(sites, transaction_id, credential), "transaction_already_finalized", 409)
    from_page = page.evaluate(
        """([url, body]) => fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify(body)}).then(async (r) => [r.status, await r.json()])""",
        [sites.issuer_origin + "/spc/transaction/finalize", {"transaction_id": transaction_id, "credential": credential}],
    )
    assert from_page[0] == 409 and from_page[1]["code"] == "transaction_already_finalized", from_page
    # In the Hanko Passkey API shape (found by its challenge) and on a fresh transaction.
    assert_rejected(issuer_post(sites, "/transaction/finalize", credential), "transaction_already_finalized", 409)
    fresh = initialize(page, user_id)
    assert_rejected(finalize(sites, fresh["transaction_id"], credential), "challenge_mismatch")

    assert transaction_state(sites, transaction_id) == "succeeded"
    assert transaction_state(sites, fresh["transaction_id"]) == "pending"
    stored = read_store(sites, lambda store: store.get_credential(b64decode(credential["rawId"])))
    assert stored.sign_count == sign_count
