// The issuer's enrolment iframe: register an SPC credential for this device
// and tell the merchant page what happened.
//
// Every ending is reported once to the parent as
//   {source: "spc-embed", type: "enrollment", outcome, code, message, lang, credentialId?}
// with postMessage to the exact merchant origin (never "*": the page that
// frames us is only trusted because frame-ancestors named it). `message` is
// the sentence the frame shows the cardholder, in the frame's language `lang`.
// The frame also reports its height ({type: "resize"}) so the page can fit it.

import { credentialToJSON, detectProblem, parseCreationOptions } from "./webauthn-json.js";
import { isBusy, parentOrigin, readJSON, reportHeight, setBusy, showOutcome } from "./frame.js";

const config = readJSON("spc-enroll-config");
const TEXT = readJSON("spc-enroll-text");
const button = document.getElementById("spc-enroll-button");
const statusBox = document.getElementById("spc-status");
const root = document.getElementById("spc-enroll");
const target = parentOrigin(config.merchantOrigin);

// After these the user may simply try again; every other outcome is final.
const RETRYABLE = new Set(["cancelled", "error"]);
const SERVER_OUTCOMES = new Set(["token_expired", "token_used", "invalid_token"]);

class ServerError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

function report(outcome, { code = outcome, credentialId, afterAction = false } = {}) {
  const message = TEXT[outcome] ?? TEXT.error ?? outcome;
  root.dataset.outcome = outcome;
  const keepButton = RETRYABLE.has(outcome);
  if (keepButton) {
    button.textContent = TEXT.try_again ?? button.textContent;
    setBusy(button, false);
  }
  showOutcome(statusBox, message, { success: outcome === "enrolled", button, keepButton, afterAction });
  if (window.parent !== window && target) {
    const data = { source: "spc-embed", type: "enrollment", outcome, code, message, lang: document.documentElement.lang };
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
  if (isBusy(button)) return;
  // Busy, not disabled: the focus stays on the button while the device asks.
  setBusy(button, true);
  root.dataset.outcome = "working";
  const afterAction = true;
  let options;
  try {
    options = await post(config.optionsUrl, { token: config.token });
  } catch (error) {
    report(serverOutcome(error), { code: error.code, afterAction });
    return;
  }
  let credential;
  try {
    credential = await navigator.credentials.create({ publicKey: parseCreationOptions(options) });
  } catch (error) {
    report(browserOutcome(error), { code: error?.name || "error", afterAction });
    return;
  }
  try {
    const result = await post(config.verifyUrl, { token: config.token, credential: credentialToJSON(credential) });
    report("enrolled", { code: "enrolled", credentialId: result.credentialId, afterAction });
  } catch (error) {
    report(serverOutcome(error), { code: error.code, afterAction });
  }
}


async function start() {
  reportHeight(target);
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
  setBusy(button, false);
  root.dataset.outcome = "ready";
}

start();
