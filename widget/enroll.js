// The issuer's enrolment iframe: register an SPC credential for this device
// and tell the merchant page what happened.
//
// Every ending is reported once to the parent as
//   {source: "spc-embed", type: "enrollment", outcome, code, message, credentialId?}
// with postMessage to the exact merchant origin (never "*": the page that
// frames us is only trusted because frame-ancestors named it).

import { credentialToJSON, detectProblem, parseCreationOptions } from "./webauthn-json.js";

const config = JSON.parse(document.getElementById("spc-enroll-config").textContent);
const button = document.getElementById("spc-enroll-button");
const statusBox = document.getElementById("spc-status");
const root = document.getElementById("spc-enroll");

const MESSAGES = {
  enrolled: "All set. Next time you pay with this card, confirm with this device's fingerprint, face or screen lock.",
  unsupported: "This browser or device can't confirm payments with a fingerprint, face or screen lock. You can keep paying as usual.",
  permission_missing: "This page doesn't allow the bank to set up payment confirmation here. You can keep paying as usual.",
  cancelled: "Setup was cancelled. You can try again, or keep paying as usual.",
  already_enrolled: "This device is already set up for this card.",
  token_expired: "This setup link has expired. Please start again from the checkout.",
  token_used: "This setup link has already been used.",
  invalid_token: "This setup link is not valid. Please start again from the checkout.",
  error: "Something went wrong and this device was not set up. Please try again later.",
};
// After these the user may simply try again; every other outcome is final.
const RETRYABLE = new Set(["cancelled", "error"]);
const SERVER_OUTCOMES = new Set(["token_expired", "token_used", "invalid_token"]);

class ServerError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function parentOrigin() {
  if (config.merchantOrigin) return config.merchantOrigin;
  // An unreadable token names no merchant. The page is then framable by the
  // configured merchants only (frame-ancestors), so the browser-reported
  // parent origin is one of them; the message carries nothing secret.
  const reported = window.location.ancestorOrigins?.[0];
  return reported && reported !== "null" ? reported : null;
}

function report(outcome, { code = outcome, credentialId } = {}) {
  const message = MESSAGES[outcome];
  root.dataset.outcome = outcome;
  // The code helps a support agent; the parent gets it as a field anyway.
  statusBox.textContent = outcome === "error" ? `${message} (${code})` : message;
  statusBox.className = outcome === "enrolled" ? "spc-status spc-success" : "spc-status spc-problem";
  statusBox.hidden = false;
  if (RETRYABLE.has(outcome)) {
    button.textContent = "Try again";
    button.disabled = false;
  } else {
    button.hidden = true;
  }
  const target = parentOrigin();
  if (window.parent !== window && target) {
    const data = { source: "spc-embed", type: "enrollment", outcome, code, message };
    if (credentialId) data.credentialId = credentialId;
    window.parent.postMessage(data, target);
  }
}

async function post(url, body) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      // The page's policy is no-referrer, under which Fetch sends a POST's
      // Origin as `null` (Chromium sends it anyway, others follow the spec);
      // the server checks Origin against CSRF, so ask for ours explicitly.
      referrerPolicy: "same-origin",
    });
  } catch {
    throw new ServerError("network_error", "the bank could not be reached");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ServerError(data.code ?? `http_${response.status}`, data.message ?? "");
  return data;
}

function serverOutcome(error) {
  return SERVER_OUTCOMES.has(error.code) ? error.code : "error";
}

function browserOutcome(error) {
  const name = error?.name ?? "";
  // Chromium: NotSupportedError "The 'payment' or 'publickey-credentials-create'
  // features are not enabled in this document"; get() says NotAllowedError.
  const permission = /'payment'|publickey-credentials-(create|get)|permissions policy/i;
  if ((name === "NotSupportedError" || name === "NotAllowedError") && permission.test(error.message)) {
    return "permission_missing";
  }
  if (name === "InvalidStateError") return "already_enrolled"; // matched excludeCredentials
  if (name === "NotAllowedError") return "cancelled"; // dismissed, timed out or refused
  if (name === "NotSupportedError") return "unsupported";
  return "error";
}

async function enrol() {
  button.disabled = true;
  statusBox.hidden = true;
  root.dataset.outcome = "working";
  let options;
  try {
    options = await post(config.optionsUrl, { token: config.token });
  } catch (error) {
    report(serverOutcome(error), { code: error.code });
    return;
  }
  let credential;
  try {
    credential = await navigator.credentials.create({ publicKey: parseCreationOptions(options) });
  } catch (error) {
    report(browserOutcome(error), { code: error?.name || "error" });
    return;
  }
  try {
    const result = await post(config.verifyUrl, { token: config.token, credential: credentialToJSON(credential) });
    report("enrolled", { code: "enrolled", credentialId: result.credentialId });
  } catch (error) {
    report(serverOutcome(error), { code: error.code });
  }
}


async function start() {
  if (config.error) {
    const outcome = SERVER_OUTCOMES.has(config.error.code) ? config.error.code : "invalid_token";
    report(outcome, { code: config.error.code });
    return;
  }
  const problem = await detectProblem("create", ["payment", "publickey-credentials-create"]);
  if (problem) {
    report(problem);
    return;
  }
  button.addEventListener("click", enrol);
  button.disabled = false;
  root.dataset.outcome = "ready";
}

start();
