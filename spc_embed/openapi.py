"""The OpenAPI 3.1 description of the issuer app, served at ``GET /openapi.json``.

Written by hand next to the routes and kept true by tests/test_transaction_api.py:
every route of the app is documented, every documented path and method is a
route, and each request example is accepted by its handler.
The static widget files (``/widget/...``) are not API and are left out.
"""

from __future__ import annotations

import copy
from typing import Any

from .context import IssuerContext
from .enrollment_input import MAX_ICON_LENGTH
from .image_urls import image_url_schema
from .tokens import MAX_INSTRUMENT_ID_LENGTH
from .transactions import (
    AMOUNT_PATTERN,
    MAX_FRACTION_DIGITS,
    MAX_INTEGER_DIGITS,
    MAX_LOGOS,
    MAX_SAFE_INTEGER,
    MAX_TEXT_LENGTH,
    MAX_TRANSACTION_ID_LENGTH,
    MAX_USER_ID_LENGTH,
    is_payee_origin,
)

EXAMPLE_TRANSACTION_DATA = {
    "amount": "100.00",
    "currency": "EUR",
    "payee_name": "Example Shop",
    "payee_origin": "https://shop.example",
    "order": "A-1042",
}
EXAMPLE_CREDENTIAL = {
    "id": "AAECAwQFBgcICQoLDA0ODw",
    "rawId": "AAECAwQFBgcICQoLDA0ODw",
    "type": "public-key",
    "authenticatorAttachment": "platform",
    "clientExtensionResults": {},
    "response": {
        "clientDataJSON": "eyJ0eXBlIjoicGF5bWVudC5nZXQiLCJjaGFsbGVuZ2UiOiJBQUFBQUFBQUFBQUFBQUFBQUFBQUFBIiwib3JpZ2luIjoi"
                          "aHR0cHM6Ly9zaG9wLmV4YW1wbGUifQ",
        "authenticatorData": "SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MFAAAAAQ",
        "signature": "MEUCIQDq",
        "userHandle": "dXNlcg",
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"content": {"application/json": content}}


REASONS = {400: "Malformed input or a failed verification", 401: "Missing, wrong or revoked API key (or link)",
           403: "Origin not allowed", 404: "Not found (also for another merchant's transaction)",
           409: "Duplicate transaction id, or the transaction is no longer pending",
           413: "Body larger than max_body_bytes", 415: "The body is not application/json",
           503: "storage_unavailable: the database does not answer; nothing was written. Retry after Retry-After "
                "seconds"}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """JSON errors; every operation that uses the database also answers 503, every one with a body 413 and 415."""
    return {str(s): {"description": REASONS[s], **_json(_ref("Error")),
                     **({"headers": _RETRY_AFTER} if s == 503 else {})} for s in statuses}


def _html_errors(*statuses: int) -> dict[str, Any]:
    """The iframe pages answer their errors as pages, in the frame, with the status of the error."""
    return {str(s): {"description": REASONS[s], "content": {"text/html": {"schema": _STRING}},
                     **({"headers": _RETRY_AFTER} if s == 503 else {})} for s in statuses}


def _identifier(max_length: int, description: str | None = None) -> dict[str, Any]:
    """What spc_embed.text.storable_text accepts: not blank, bounded, no control characters (H2)."""
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": _STORABLE}
    if description:
        schema["description"] = description
    return schema


def _token_response(description: str) -> dict[str, Any]:
    """An answer that is one signed token (``{"token": ...}``), described."""
    return {"type": "object", "required": ["token"],
            "properties": {"token": {"type": "string", "description": description}}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": description, **_json(schema)}}


MERCHANT_KEY: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]
MERCHANT_KEY_OR_ORIGIN: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}, {}]

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
# Unpadded base64url (spc_embed.encoding.b64url_decode; its canonical-trailing-bits rule is beyond a pattern).
_B64URL = {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"}
# No C0/C1 control character or DEL anywhere, and one character that is not white space (storable_text, H2).
_STORABLE = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
# spc_embed.image_urls: a URL the browser can fetch, spelled as the browser signs it.
_IMAGE_URL_RULES = ("Spelled as browsers write it, since SPC signs the browser's spelling: a lower-case DNS host "
                    "name, no default port, a path (at least \"/\"), no \".\" or \"..\" segments, no fragment, "
                    "and characters outside a URL's own percent-encoded (but not letters, digits or \"-._~\").")
_ICON = {**image_url_schema(local_http=True, max_length=MAX_ICON_LENGTH),
         "description": "An https:// URL (http:// on localhost) or a data:image/ URL. " + _IMAGE_URL_RULES}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string", "description": "Stable machine-readable code"},
                       "message": {"type": "string"}},
    },
    "TransactionData": {
        "type": "object", "required": ["amount", "currency"],
        "description": "Free-form members are kept and hashed. payee_name and payee_origin name one payee: the "
                       "calling merchant (its name, one of its origins) or one of its configured payees. Left out, "
                       "the payee shown is the merchant itself: its name and, when it has exactly one https origin, "
                       "that origin; a merchant with neither needs one of them sent. currency may be left out for a "
                       "merchant with a default_currency. Defaults are shown to the cardholder, never written into "
                       "the data. The hash is SHA-256 over the RFC 8785 serialization of the data as sent (numbers "
                       "as ECMAScript writes them: 100.10 as 100.1), base64url.",
        "anyOf": [{"required": ["payee_name"]}, {"required": ["payee_origin"]}],
        "properties": {
            "amount": {
                "description": "A canonical decimal string (\"123.45\"), or a JSON number written the same way "
                               "(123.45, as the Hanko Passkey API's examples send it). SPC's total.value is the amount "
                               "exactly as written in the request body: 100.10 is shown as \"100.10\". A number must "
                               f"have no exponent (1e2), no sign (-1, -0), at most {MAX_FRACTION_DIGITS} fraction and "
                               f"{MAX_INTEGER_DIGITS} integer digits, and a value an IEEE double holds as the same "
                               "decimal, so that the amount hashed and the amount shown agree; otherwise send it as a "
                               "string. JSON Schema cannot see a number's spelling: the exponent and exactness rules "
                               "are stated here only (else 400 invalid_transaction_data).",
                "anyOf": [
                    {"type": "string", "pattern": f"^{AMOUNT_PATTERN.pattern}$"},
                    {"type": "number", "minimum": 0, "exclusiveMaximum": 10**MAX_INTEGER_DIGITS,
                     "multipleOf": 10**-MAX_FRACTION_DIGITS},
                ],
            },
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$",
                         "description": "Upper-case ISO 4217; optional for a merchant with a default_currency"},
            "payee_name": {"type": "string", "description": "The merchant's configured name, or the name of one of "
                                                            "its configured payees (else 400 payee_not_allowed)"},
            "payee_origin": {"type": "string", "description": "https origin as browsers serialize it: one of the "
                                                              "merchant's origins, or the origin of the configured "
                                                              "payee named (else 400 payee_not_allowed)"},
            "merchant_origin": {"type": "string",
                                "description": "The page that calls SPC; required when the merchant has several"},
            "payment_entities_logos": {"type": "array", "maxItems": MAX_LOGOS, "items": {
                "type": "object", "required": ["url", "label"], "additionalProperties": False,
                "properties": {"url": {**image_url_schema(),
                                       "description": "An https:// or data:image/ URL. " + _IMAGE_URL_RULES},
                               "label": _identifier(MAX_TEXT_LENGTH)}}},
        },
        "additionalProperties": _ref("TransactionValue"),
    },
    "TransactionValue": {
        "description": "A free-form value of transaction_data: JSON nested at most 8 levels, the whole "
                       "transaction_data at most 16 KiB canonical. Numbers are accepted (and hashed as RFC 8785 "
                       "writes them) when finite, and integers (no fraction, no exponent: 17, not 17.0) only within "
                       f"±{MAX_SAFE_INTEGER}; JSON Schema cannot tell 17 from 17.0, so this schema leaves numbers "
                       "out rather than state that rule wrongly.",
        "anyOf": [
            {"type": ["string", "boolean", "null"]},
            {"type": "array", "maxItems": 16, "items": _ref("TransactionValue")},
            {"type": "object", "maxProperties": 16, "additionalProperties": _ref("TransactionValue")},
        ],
    },
    "InitializeRequest": {
        "type": "object", "required": ["user_id", "transaction_id", "transaction_data"],
        "properties": {
            "user_id": _identifier(MAX_USER_ID_LENGTH),
            "transaction_id": _identifier(MAX_TRANSACTION_ID_LENGTH, "Unique per merchant"),
            "transaction_data": _ref("TransactionData"),
            "show_opt_out": {"type": "boolean", "default": False},
            "locale": {"type": "string", "maxLength": 35, "pattern": "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8}){0,4}$",
                       "description": "The cardholder's language (a language tag such as \"de\" or \"fr-CH\"), "
                                      "for the fallback frame; without it, or without a catalog for it, the "
                                      "frame follows the browser's Accept-Language, else the issuer's default"},
            "instrument_id": {**_identifier(255),
                              "description": "The card this payment is for (the id the issuer gave it in the "
                                             "enrolment link): only its credentials are offered, with its name and "
                                             "art, and the result token names it. Optional when the user has one "
                                             "card; a user with several is otherwise offered no credentials."},
        },
    },
    "PublicKeyCredentialRequestOptionsJSON": {
        "type": "object", "required": ["challenge", "rpId", "allowCredentials", "userVerification", "timeout"],
        "properties": {
            "challenge": _STRING, "rpId": _STRING, "timeout": {"type": "integer"},
            "userVerification": {"const": "required"},
            "allowCredentials": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"const": "public-key"}, "id": _STRING,
                "transports": {"type": "array", "items": _STRING}}}},
        },
    },
    "SecurePaymentConfirmationRequestJSON": {
        "type": "object", "required": ["rpId", "challenge", "credentialIds", "instrument", "timeout"],
        "description": "SecurePaymentConfirmationRequest with binary members as base64url. credentialIds is "
                       "empty and instrument null alike for an unknown user and a user without credentials.",
        "properties": {
            "rpId": _STRING, "challenge": _STRING, "timeout": {"type": "integer"},
            "credentialIds": {"type": "array", "items": _STRING},
            "instrument": {"type": ["object", "null"], "properties": {
                "displayName": _STRING, "icon": _STRING, "iconMustBeShown": {"type": "boolean"}}},
            "payeeName": _STRING, "payeeOrigin": _STRING, "showOptOut": {"type": "boolean"},
            "paymentEntitiesLogos": {"type": "array", "items": {"type": "object"}},
        },
    },
    "InitializeResponse": {
        "type": "object",
        "required": ["publicKey", "secure_payment_confirmation", "total", "transaction_id", "transaction_hash",
                     "merchant_origin", "expires_at", "fallback_url", "opt_out_token"],
        "properties": {
            "publicKey": _ref("PublicKeyCredentialRequestOptionsJSON"),
            "mediation": {"const": "optional"},
            "secure_payment_confirmation": _ref("SecurePaymentConfirmationRequestJSON"),
            "total": {"type": "object", "required": ["currency", "value"],
                      "properties": {"currency": _STRING, "value": _STRING},
                      "description": "PaymentRequest details.total.amount, exactly"},
            "transaction_id": _STRING, "transaction_hash": _STRING, "merchant_origin": _STRING,
            "expires_at": {"type": "integer", "description": "Unix time"},
            "fallback_url": {"type": "string",
                             "description": "Issuer iframe page confirming this transaction without SPC"},
            "opt_out_token": {"type": "string",
                              "description": "Hand it to the merchant page with the rest of this answer: the page "
                                             "sends it with POST /transaction/opt-out to prove the report is "
                                             "about a transaction it was given (not needed with an API key)"},
        },
    },
    "AuthenticationResponseJSON": {
        "type": "object", "required": ["id", "rawId", "type", "response"],
        "description": "PublicKeyCredential.toJSON() of the SPC (or WebAuthn) result; id equals rawId",
        "properties": {
            "id": _B64URL, "rawId": _B64URL, "type": {"const": "public-key"},
            "authenticatorAttachment": _STRING, "clientExtensionResults": {"type": "object"},
            "response": {"type": "object", "required": ["clientDataJSON", "authenticatorData", "signature"],
                         "properties": {"clientDataJSON": _B64URL, "authenticatorData": _B64URL,
                                        "signature": _B64URL,
                                        "userHandle": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_-]*$"}}},
        },
    },
    "FinalizeRequest": {
        "oneOf": [
            {"type": "object", "required": ["transaction_id", "credential"],
             "properties": {"transaction_id": _identifier(MAX_TRANSACTION_ID_LENGTH),
                            "credential": _ref("AuthenticationResponseJSON")}},
            {**_ref("AuthenticationResponseJSON"),
             "description": "Hanko Passkey API shape: the transaction is found by the challenge"},
        ],
    },
    "TokenResponse": _token_response(
        "ES256 JWT: iss, sub, aud (merchant id), iat, exp, jti, cred, trans {id, hash, method: "
        "spc|fallback|passkey, instrument_id: the card the credential was enrolled for}; keys at "
        "/.well-known/jwks.json"),
    "OptOutRequest": {
        "type": "object", "required": ["transaction_id"],
        "properties": {
            "transaction_id": _identifier(MAX_TRANSACTION_ID_LENGTH),
            "opt_out_token": {"description": "initialize's opt_out_token, a string of at most 128 characters; "
                                             "required without an API key, ignored with one"},
        },
    },
    "OptOutResponse": {"type": "object", "required": ["outcome", "transaction_id"],
                       "properties": {"outcome": {"const": "opted_out"}, "transaction_id": _STRING}},
    "Transaction": {
        "type": "object",
        "properties": {
            "tenant_id": _STRING, "transaction_id": _STRING, "user_id": _STRING,
            "state": {"enum": ["pending", "succeeded", "failed", "expired"]},
            "failure_reason": _NULLABLE_STRING, "method": {"enum": ["spc", "fallback", "passkey", None]},
            "credential_id": _NULLABLE_STRING, "merchant_origin": _STRING, "instrument_id": _NULLABLE_STRING,
            "transaction_data": {"type": "object", "description": "As initialize received it (TransactionData)"},
            "transaction_hash": _STRING,
            "created_at": {"type": "number"}, "expires_at": {"type": "number"},
            "finalized_at": {"type": ["number", "null"]}, "browser_bound_public_key": _NULLABLE_STRING,
        },
    },
    "TransactionList": {"type": "object", "required": ["transactions"],
                        "properties": {"transactions": {"type": "array", "items": _ref("Transaction")}}},
    "Credential": {
        "type": "object",
        "properties": {
            "id": _STRING, "user_id": _STRING, "name": _STRING, "instrument_id": _STRING, "instrument_name": _STRING,
            "instrument_icon": _STRING, "enrolled_origin": _STRING, "aaguid": _STRING,
            "transports": {"type": "array", "items": _STRING}, "backup_eligible": {"type": "boolean"},
            "backed_up": {"type": "boolean"}, "created_at": {"type": "number"},
            "last_used_at": {"type": ["number", "null"]},
        },
    },
    "CredentialList": {"type": "object", "required": ["credentials"],
                       "properties": {"credentials": {"type": "array", "items": _ref("Credential")}}},
    "RenameCredentialRequest": {"type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string", "maxLength": MAX_TEXT_LENGTH,
                                                        "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$",
                                                        "description": "Empty clears it; no control characters"}}},
    "JWKS": {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": {
        "type": "object", "required": ["kty", "crv", "x", "y", "kid", "alg", "use"]}}}},
    "EnrollmentRequest": {"type": "object", "required": ["token"],
                          "properties": {"token": _identifier(4096), "credential": {"type": "object"}}},
    "RegistrationInitializeRequest": {
        "type": "object", "required": ["user_id", "username"],
        "description": "The Hanko Passkey API's body, with spc-embed's card (SPC instrument): instrument_name and "
                       "instrument_icon together, or none of the three instrument members. With a card the "
                       "credential confirms SPC payments for it; without one it is a passkey of the issuer's rp_id "
                       "that is never offered for a payment.",
        "properties": {
            "user_id": _identifier(MAX_USER_ID_LENGTH, "The issuer's id of the cardholder"),
            "username": _identifier(MAX_TEXT_LENGTH, "user.name in the options (kept from the first call)"),
            "display_name": _identifier(MAX_TEXT_LENGTH, "user.displayName; defaults to username"),
            "icon": {**_ICON, "description": "Hanko's user icon: checked, then ignored (WebAuthn L2 removed "
                                             "user.icon); the card's picture is instrument_icon"},
            "instrument_id": _identifier(MAX_INSTRUMENT_ID_LENGTH, "The card's id at the issuer (defaults to "
                                                                   "instrument_name)"),
            "instrument_name": _identifier(MAX_TEXT_LENGTH, "The card's name, shown in the SPC dialog"),
            "instrument_icon": {**_ICON, "description": "The card's picture, shown in the SPC dialog"},
        },
        "dependentRequired": {"instrument_id": ["instrument_name", "instrument_icon"],
                              "instrument_name": ["instrument_icon"], "instrument_icon": ["instrument_name"]},
    },
    "RegistrationInitializeResponse": {
        "type": "object", "required": ["publicKey"],
        "properties": {"publicKey": {"type": "object", "description": "PublicKeyCredentialCreationOptionsJSON "
                                     "(extensions.payment.isPayment true), for create() of @github/webauthn-json"}},
    },
    "RegistrationResponseJSON": {
        "type": "object", "required": ["id", "rawId", "type", "response"],
        "description": "What create() returns (PublicKeyCredential.toJSON()), as-is",
        "properties": {"id": _B64URL, "rawId": _B64URL, "type": {"const": "public-key"},
                       "response": {"type": "object", "required": ["clientDataJSON", "attestationObject"],
                                    "properties": {"clientDataJSON": _B64URL, "attestationObject": _B64URL}}},
    },
    "RegistrationTokenResponse": _token_response(
        "ES256 JWT as the Hanko Passkey API's: sub (the user id), cred (the credential id), aud [rp_id], iat; "
        "and iss, exp, jti. No trans: it confirms no payment. Keys at /.well-known/jwks.json"),
    "EnrollmentLinkRequest": {
        "type": "object",
        "required": ["user_id", "user_name", "user_display_name", "instrument_name", "instrument_icon",
                     "merchant_origin"],
        "properties": {
            "user_id": _identifier(MAX_USER_ID_LENGTH),
            "user_name": _identifier(MAX_TEXT_LENGTH),
            "user_display_name": _identifier(MAX_TEXT_LENGTH),
            "instrument_id": _identifier(MAX_INSTRUMENT_ID_LENGTH, "The card's id at the issuer (defaults to "
                                                                   "instrument_name)"),
            "instrument_name": _identifier(MAX_TEXT_LENGTH),
            "instrument_icon": _ICON,
            "merchant_origin": {"type": "string", "description": "The page the iframe will be framed by: an origin "
                                                                 "of a configured merchant, exactly"},
            "locale": {"type": "string", "maxLength": 35, "pattern": "^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8}){0,4}$",
                       "description": "The cardholder's language for the frame"},
        },
    },
    "EnrollmentLinkResponse": {
        "type": "object", "required": ["url", "expires_at"],
        "properties": {"url": {"type": "string", "description": "The enrolment iframe URL, single use"},
                       "expires_at": {"type": "integer", "description": "Unix time the link expires at"}},
    },
}


def _paths() -> dict[str, Any]:
    return {**_transaction_paths(), **_management_paths(), **_public_paths(), **_iframe_paths()}


def _transaction_paths() -> dict[str, Any]:
    """The server-to-server transaction API, and its browser-facing finalize and opt-out (CORS)."""
    cors_preflight = {
        "summary": "CORS preflight (only the merchants' origins are allowed; no credentials)",
        "security": [],
        "responses": {"204": {"description": "Access-Control-Allow-* for allowlisted origins, Vary: Origin"}},
    }
    return {
        "/transaction/initialize": {"post": {
            "summary": "Start a payment confirmation (Hanko Passkey API shape)",
            "description": "Returns publicKey options for navigator.credentials.get(), the "
                           "secure-payment-confirmation method data and total for PaymentRequest, and a signed "
                           "fallback iframe URL. A transaction id is unique per merchant: a repeat is 409.",
            "security": MERCHANT_KEY,
            "requestBody": {"required": True, **_json(_ref("InitializeRequest"), {
                "user_id": "customer-42", "transaction_id": "order-1042", "transaction_data": EXAMPLE_TRANSACTION_DATA,
            })},
            "responses": {**_ok("Options for SPC and for WebAuthn", _ref("InitializeResponse")),
                          **_errors(400, 401, 409, 413, 415, 503)},
        }},
        "/transaction/finalize": {
            "post": {
                "summary": "Verify the assertion and complete the transaction",
                "description": "With an API key from the merchant's backend, or without one from the merchant's "
                               "page (CORS; the merchant is the one owning the Origin). A merchant's transaction "
                               "accepts payment.get (SPC) assertions only. A transaction of the issuer's own site "
                               "(a first-party tenant: the issuer's origin, or https under the rp_id) also "
                               "accepts the webauthn.get assertion of navigator.credentials.get() with "
                               "initialize's publicKey, made top-level on that page; its result's trans.method "
                               "is \"passkey\" (the browser showed no amount).",
                "security": MERCHANT_KEY_OR_ORIGIN,
                "requestBody": {"required": True, **_json(_ref("FinalizeRequest"), {
                    "transaction_id": "order-1042", "credential": EXAMPLE_CREDENTIAL,
                })},
                "responses": {**_ok("The signed result", _ref("TokenResponse")),
                              **_errors(400, 401, 403, 404, 409, 413, 415, 503)},
            },
            "options": cors_preflight,
        },
        "/transaction/opt-out": {
            "post": {
                "summary": "Report that the user chose to opt out in the SPC dialog",
                "description": "Records the opt-out, fails the transaction and stops offering the user's "
                               "current credentials to this merchant. From the merchant's backend: its API key. "
                               "From the merchant's page (CORS, no key): the page must send the transaction's "
                               "opt_out_token from initialize; it is checked before the transaction is looked up, "
                               "and a missing one is 400 opt_out_token_required, a wrong one 404 "
                               "transaction_not_found exactly as for an unknown id, so a caller without it learns "
                               "nothing about which transactions exist.",
                "security": MERCHANT_KEY_OR_ORIGIN,
                "requestBody": {"required": True, **_json(_ref("OptOutRequest"), {"transaction_id": "order-1042"})},
                "responses": {**_ok("Recorded", _ref("OptOutResponse")),
                              **_errors(400, 401, 403, 404, 409, 413, 415, 503)},
            },
            "options": cors_preflight,
        },
    }


def _management_paths() -> dict[str, Any]:
    """Listings and credential management (merchant or admin keys)."""
    user_id = {"name": "user_id", "in": "query", "required": True, "schema": _identifier(MAX_USER_ID_LENGTH)}
    credential_id = {"name": "credential_id", "in": "path", "required": True, "schema": _STRING,
                     "description": "base64url credential id"}
    return {
        "/transactions": {"get": {
            "summary": "A user's transactions (a merchant key sees its own, the admin key all)",
            "security": MERCHANT_KEY, "parameters": [user_id],
            "responses": {**_ok("Newest first", _ref("TransactionList")), **_errors(400, 401, 503)},
        }},
        "/credentials": {"get": {
            "summary": "A user's active credentials (admin key)",
            "security": MERCHANT_KEY, "parameters": [user_id],
            "responses": {**_ok("Oldest first", _ref("CredentialList")), **_errors(400, 401, 503)},
        }},
        "/credentials/{credential_id}": {
            "get": {
                "summary": "One active credential (admin key)", "security": MERCHANT_KEY, "parameters": [credential_id],
                "responses": {**_ok("The credential", _ref("Credential")), **_errors(401, 404, 503)},
            },
            "patch": {
                "summary": "Rename a credential (admin key)", "security": MERCHANT_KEY, "parameters": [credential_id],
                "requestBody": {"required": True, **_json(_ref("RenameCredentialRequest"), {"name": "Work laptop"})},
                "responses": {**_ok("The renamed credential", _ref("Credential")),
                              **_errors(400, 401, 404, 413, 415, 503)},
            },
            "delete": {
                "summary": "Revoke a credential (admin key)", "security": MERCHANT_KEY, "parameters": [credential_id],
                "responses": {"204": {"description": "Revoked"}, **_errors(400, 401, 404, 503)},
            },
        },
    }


def _enrollment_paths(ctx: IssuerContext) -> dict[str, Any]:
    """Enrolling a cardholder from the issuer's own backend (admin key only)."""
    link_example = {
        "user_id": "customer-42", "user_name": "alex@example.com", "user_display_name": "Alex Doe",
        "instrument_name": "Visa ****4242", "instrument_icon": ctx.url("/widget/card.png"),
        "merchant_origin": sorted(ctx.config.merchant_origins)[0],
    }
    return {
        "/registration/initialize": {"post": {
            "summary": "Start registering a passkey on the issuer's own page (Hanko Passkey API shape; admin key)",
            "description": "Creation options with the SPC payment extension for navigator.credentials.create() "
                           "(or create() of @github/webauthn-json), top-level on the issuer's origin or a "
                           "first-party tenant's (https, host the rp_id or under it). Creates the user if new.",
            "security": MERCHANT_KEY,
            "requestBody": {"required": True, **_json(_ref("RegistrationInitializeRequest"), {
                "user_id": "customer-42", "username": "alex@example.com", "instrument_name": "Visa ****4242",
                "instrument_icon": ctx.url("/widget/card.png"),
            })},
            "responses": {**_ok("Creation options", _ref("RegistrationInitializeResponse")),
                          **_errors(400, 401, 413, 415, 503)},
        }},
        "/registration/finalize": {"post": {
            "summary": "Verify and store the new passkey (Hanko Passkey API shape; admin key or none)",
            "description": "The body is create()'s credential as-is. No key is needed, as in the Hanko Passkey "
                           "API: the authority is the challenge, which must be one initialize (admin key) issued, "
                           "live and unused; a key that is sent must be an admin key. clientDataJSON.origin the "
                           "issuer's or a first-party tenant's origin, not cross-origin; user verification "
                           "required. A credential id registered before is 409 credential_exists.",
            "security": MERCHANT_KEY_OR_ORIGIN,
            "requestBody": {"required": True, **_json(_ref("RegistrationResponseJSON"), {
                "id": "AAECAwQFBgcICQoLDA0ODw", "rawId": "AAECAwQFBgcICQoLDA0ODw", "type": "public-key",
                "response": {"clientDataJSON": "e30", "attestationObject": "oA"},
            })},
            "responses": {**_ok("The registration token", _ref("RegistrationTokenResponse")),
                          **_errors(400, 401, 409, 413, 415, 503)},
        }},
        "/enrollment/links": {"post": {
            "summary": "Mint an enrolment iframe link for one cardholder, card and merchant page (admin key)",
            "description": "The URL Issuer.enrollment_url returns in process: single use, valid for "
                           "enrollment_ttl seconds. Nothing is stored until it is used.",
            "security": MERCHANT_KEY,
            "requestBody": {"required": True, **_json(_ref("EnrollmentLinkRequest"), link_example)},
            "responses": {**_ok("The link", _ref("EnrollmentLinkResponse")), **_errors(400, 401, 413, 415)},
        }},
    }


def _enrollment_link_rules(ctx: IssuerContext) -> dict[str, Any]:
    """EnrollmentLinkRequest with this issuer's merchant origins, the only ones a link may name."""
    schema: dict[str, Any] = copy.deepcopy(SCHEMAS["EnrollmentLinkRequest"])
    schema["properties"]["merchant_origin"]["enum"] = sorted(ctx.config.merchant_origins)
    return schema


def _public_paths() -> dict[str, Any]:
    return {
        "/.well-known/jwks.json": {"get": {
            "summary": "Public keys of the result tokens (kid = RFC 7638 thumbprint)", "security": [],
            "responses": _ok("JWK Set", _ref("JWKS")),
        }},
        "/healthz": {"get": {
            "summary": "Health check for load balancers: does this instance's database answer?", "security": [],
            "description": "No authentication and no data: 200 `{\"status\": \"ok\"}` when the database "
                           "answers one trivial query, 503 `storage_unavailable` (with Retry-After) when not.",
            "responses": {"200": {"description": "The database answers", **_json({"type": "object"})},
                          "503": {"description": "The database does not answer", **_json(_ref("Error"))}},
        }},
        "/openapi.json": {"get": {
            "summary": "This document", "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", **_json({"type": "object"})}},
        }},
    }


def _iframe_paths() -> dict[str, Any]:
    """The issuer's own frames: pages and the POSTs their scripts make (Origin: the issuer)."""
    return {
        "/pay": {"get": {
            "summary": "Fallback iframe page for one transaction (HTML)", "security": [],
            "parameters": [{"name": "handle", "in": "query", "required": True, "schema": _identifier(4096)}],
            "responses": {"200": {"description": "HTML page, framable only by the transaction's merchant",
                                  "content": {"text/html": {"schema": _STRING}}},
                          **_html_errors(400, 401, 404, 409, 503)},
        }},
        "/pay/finalize": {"post": {
            "summary": "Complete a transaction from the fallback iframe (webauthn.get, Origin: the issuer)",
            "security": [],
            "requestBody": {"required": True, **_json({
                "type": "object", "required": ["handle", "credential"],
                "properties": {"handle": _identifier(4096), "credential": _ref("AuthenticationResponseJSON")},
            }, {"handle": "<from fallback_url>", "credential": EXAMPLE_CREDENTIAL})},
            "responses": {**_ok("The signed result, for the iframe to post to the merchant page",
                                _ref("TokenResponse")), **_errors(400, 401, 403, 404, 409, 413, 415, 503)},
        }},
        "/enroll": {"get": {
            "summary": "Enrolment iframe page (HTML)", "security": [],
            "parameters": [{"name": "token", "in": "query", "required": True, "schema": _identifier(4096)}],
            "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": _STRING}}},
                          **_html_errors(400, 401, 409, 503)},
        }},
        "/enroll/options": {"post": {
            "summary": "Registration options for the enrolment iframe (Origin: the issuer)", "security": [],
            "requestBody": {"required": True, **_json(_ref("EnrollmentRequest"), {"token": "<enrolment token>"})},
            "responses": {**_ok("PublicKeyCredentialCreationOptionsJSON", {"type": "object"}),
                          **_errors(400, 401, 403, 409, 413, 415, 503)},
        }},
        "/enroll/verify": {"post": {
            "summary": "Verify and store the new credential (Origin: the issuer)", "security": [],
            "requestBody": {"required": True, **_json(_ref("EnrollmentRequest"), {
                "token": "<enrolment token>", "credential": {}})},
            "responses": {**_ok("Enrolled", {"type": "object"}), **_errors(400, 401, 403, 409, 413, 415, 503)},
        }},
    }


def _payee_rules(ctx: IssuerContext) -> dict[str, Any]:
    """TransactionData's payee members, stated for this issuer: each payee a merchant may show (H7) is a name and
    its origins. One document serves every merchant, so it lists them all; the API takes only the caller's own.
    The members the merchants' defaults fill in are optional here."""
    payees: list[tuple[str | None, tuple[str, ...]]] = []
    for merchant in ctx.config.merchants:
        payees.append((merchant.name or None, tuple(o for o in merchant.origins if is_payee_origin(o))))
        payees.extend((payee.name, (payee.origin,) if payee.origin else ()) for payee in merchant.payees)
    # A name without an origin, or the reverse, is not a payee of its own: the other member is then left out.
    choices = []
    for name, origins in payees:
        properties: dict[str, Any] = {
            "payee_name": {"const": name} if name else False,
            "payee_origin": {"enum": list(origins)} if origins else False,
        }
        choices.append({"properties": properties})
    schema: dict[str, Any] = copy.deepcopy(SCHEMAS["TransactionData"])
    schema["allOf"] = [{"anyOf": choices}]
    # Members a merchant's configuration fills in (Merchant.default_currency, .default_payee): optional as soon as
    # one merchant has the default, as the payees above are the union of what each merchant may send.
    if any(merchant.default_currency for merchant in ctx.config.merchants):
        schema["required"] = ["amount"]
    if any(merchant.default_payee != (None, None) for merchant in ctx.config.merchants):
        del schema["anyOf"]
    merchant_origins = sorted({origin for merchant in ctx.config.merchants for origin in merchant.origins})
    schema["properties"]["merchant_origin"] = {**schema["properties"]["merchant_origin"], "enum": merchant_origins}
    return schema


def _with_own_example(paths: dict[str, Any], ctx: IssuerContext) -> dict[str, Any]:
    """initialize's example names this issuer's first merchant as the payee, so that it is accepted as written."""
    merchant = ctx.config.merchants[0]
    payee = {"payee_name": merchant.name} if merchant.name else {}
    if merchant.origins and is_payee_origin(merchant.origins[0]):
        payee["payee_origin"] = merchant.origins[0]
    if payee:
        content = paths["/transaction/initialize"]["post"]["requestBody"]["content"]["application/json"]
        example = copy.deepcopy(content["example"])
        data = {k: v for k, v in example["transaction_data"].items() if k not in ("payee_name", "payee_origin")}
        example["transaction_data"] = {**data, **payee}
        content["example"] = example
    return paths


def openapi_document(ctx: IssuerContext) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"{ctx.config.rp_name}: Secure Payment Confirmation (spc-embed)",
            "version": "1",
            "description": "Server-to-server calls authenticate with the apiKey header or Authorization: Bearer. "
                           "Merchant keys act for their merchant; the admin keys (IssuerConfig.admin_api_keys) "
                           "are the issuer's back office: they register passkeys on the bank's own pages, mint "
                           "enrolment links, manage credentials and list across merchants. Every error is JSON "
                           "{code, message} with a stable code.",
        },
        "servers": [{"url": ctx.base_url}],
        "paths": _with_own_example({**_paths(), **_enrollment_paths(ctx)}, ctx),
        "components": {
            "schemas": {**SCHEMAS, "TransactionData": _payee_rules(ctx),
                        "EnrollmentLinkRequest": _enrollment_link_rules(ctx)},
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "apiKey"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
