// The issuer's fallback iframe: where SPC is not available, the cardholder
// confirms the transaction shown on this page with navigator.credentials.get().
//
// Every ending is reported to the merchant page as
//   {source: "spc-embed", type: "payment", transactionId, outcome, code, message, token?}
// with outcome "confirmed" | "cancelled" (the user may try again) | "failed",
// posted to the exact merchant origin only (never "*": the token is for it alone).

import { credentialToJSON, detectProblem, parseRequestOptions } from "./webauthn-json.js";

const config = JSON.parse(document.getElementById("spc-pay-config").textContent);
const root = document.getElementById("spc-pay");
const button = document.getElementById("spc-pay-button");
const statusBox = document.getElementById("spc-status");

const MESSAGES = {
  confirmed: "Payment confirmed. You can continue in the shop.",
  cancelled: "The confirmation was cancelled. You can try again, or choose another way to pay.",
  unsupported: "This browser or device can't confirm payments with a fingerprint, face or screen lock.",
  permission_missing: "This page doesn't allow the bank to confirm payments here.",
  network_error: "The bank could not be reached. Please try again later.",
  // The server's messages for these speak to developers; the cardholder needs a next step.
  transaction_expired: "This payment has expired. Please start again from the checkout.",
  token_expired: "This payment has expired. Please start again from the checkout.",
  transaction_already_finalized: "This payment has already been confirmed.",
  transaction_failed: "This payment can no longer be confirmed here. Please start again from the checkout.",
  error: "Something went wrong and this payment was not confirmed.",
};

class ServerError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const sentence = (text) => text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");

function parentOrigin(outcome) {
  if (config.merchantOrigin) return config.merchantOrigin;
  // A link that names no transaction names no merchant; the page is then framable only by
  // configured merchants (frame-ancestors), and a failure carries nothing secret.
  const reported = window.location.ancestorOrigins?.[0];
  return outcome === "failed" && reported && reported !== "null" ? reported : null;
}

function report(outcome, { code = outcome, text = MESSAGES[code] ?? MESSAGES.error, token } = {}) {
  root.dataset.outcome = outcome;
  statusBox.textContent = text;
  statusBox.className = outcome === "confirmed" ? "spc-status spc-success" : "spc-status spc-problem";
  statusBox.hidden = false;
  if (outcome === "cancelled") {
    button.textContent = "Try again";
    button.disabled = false;
  } else {
    button.hidden = true;
  }
  const target = parentOrigin(outcome);
  if (window.parent === window || !target) return;
  const message = { source: "spc-embed", type: "payment", transactionId: config.transactionId, outcome, code,
    message: text };
  if (token) message.token = token;
  window.parent.postMessage(message, target);
}

async function post(url, body) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      credentials: "omit", cache: "no-store",
      // The page's no-referrer policy would make Fetch send `Origin: null`; the server checks Origin.
      referrerPolicy: "same-origin",
    });
  } catch {
    throw new ServerError("network_error", MESSAGES.network_error);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ServerError(data.code ?? `http_${response.status}`, data.message ?? "");
  return data;
}

function reportBrowserError(error) {
  const name = error?.name || "Error";
  // Chromium: NotAllowedError "The 'publickey-credentials-get' feature is not enabled in this document".
  if (/publickey-credentials-get|permissions policy/i.test(error?.message ?? "")) {
    report("failed", { code: "permission_missing" });
  } else if (name === "NotAllowedError" || name === "AbortError") {
    report("cancelled", { code: name, text: MESSAGES.cancelled }); // dismissed, timed out or refused
  } else {
    report("failed", { code: name, text: name === "NotSupportedError" ? MESSAGES.unsupported : MESSAGES.error });
  }
}

async function confirm() {
  button.disabled = true;
  statusBox.hidden = true;
  root.dataset.outcome = "working";
  let credential;
  try {
    credential = await navigator.credentials.get({ publicKey: parseRequestOptions(config.publicKey) });
  } catch (error) {
    reportBrowserError(error);
    return;
  }
  try {
    const result = await post(config.finalizeUrl, { handle: config.handle, credential: credentialToJSON(credential) });
    report("confirmed", { code: "confirmed", token: result.token });
  } catch (error) {
    report("failed", { code: error.code, text: MESSAGES[error.code] ?? sentence(error.message || MESSAGES.error) });
  }
}


async function start() {
  if (config.error) {
    const { code, message } = config.error;
    report("failed", { code, text: MESSAGES[code] ?? sentence(message) });
    return;
  }
  const problem = await detectProblem("get", ["publickey-credentials-get"]);
  if (problem) {
    report("failed", { code: problem });
    return;
  }
  button.addEventListener("click", confirm);
  button.disabled = false;
  root.dataset.outcome = "ready";
}

start();
