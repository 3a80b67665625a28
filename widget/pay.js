// The issuer's fallback iframe: where SPC is not available, the cardholder
// confirms the transaction shown on this page with navigator.credentials.get().
//
// Every ending is reported to the merchant page as
//   {source: "spc-embed", type: "payment", transactionId, outcome, code, message, lang, token?}
// with outcome "confirmed" | "cancelled" (the user may try again) | "failed",
// posted to the exact merchant origin only (never "*": the token is for it alone).
// `message` is the sentence the frame shows the cardholder, in the frame's language `lang`.
// The frame also reports its height ({type: "resize"}) so the page can fit it.

import { credentialToJSON, detectProblem, parseRequestOptions } from "./webauthn-json.js";
import { isBusy, parentOrigin, readJSON, reportHeight, setBusy, showOutcome } from "./frame.js";

const config = readJSON("spc-pay-config");
const TEXT = readJSON("spc-pay-text");
const root = document.getElementById("spc-pay");
const button = document.getElementById("spc-pay-button");
const statusBox = document.getElementById("spc-status");
// A link that names no transaction names no merchant; the page is then framable only by
// configured merchants (frame-ancestors), and a failure carries nothing secret.
const target = parentOrigin(config.merchantOrigin);

class ServerError extends Error {
  constructor(code) {
    super(code);
    this.code = code;
  }
}

// The cardholder's sentence for a code: the issuer's own messages speak to developers, never shown.
const textFor = (code) => TEXT[code] ?? TEXT.error ?? code;

function report(outcome, { code = outcome, text = textFor(code), token, afterAction = false } = {}) {
  root.dataset.outcome = outcome;
  const keepButton = outcome === "cancelled";
  if (keepButton) {
    button.textContent = TEXT.try_again ?? button.textContent;
    setBusy(button, false);
  }
  showOutcome(statusBox, text, { success: outcome === "confirmed", button, keepButton, afterAction });
  if (window.parent === window || !target || (!config.merchantOrigin && outcome !== "failed")) return;
  const message = { source: "spc-embed", type: "payment", transactionId: config.transactionId, outcome, code,
    message: text, lang: document.documentElement.lang };
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
    throw new ServerError("network_error");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ServerError(data.code ?? `http_${response.status}`);
  return data;
}

function reportBrowserError(error, afterAction) {
  const name = error?.name || "Error";
  // Chromium: NotAllowedError "The 'publickey-credentials-get' feature is not enabled in this document".
  if (/publickey-credentials-get|permissions policy/i.test(error?.message ?? "")) {
    report("failed", { code: "permission_missing", afterAction });
  } else if (name === "NotAllowedError" || name === "AbortError") {
    report("cancelled", { code: name, text: textFor("cancelled"), afterAction }); // dismissed, timed out or refused
  } else {
    report("failed", { code: name, text: textFor(name === "NotSupportedError" ? "unsupported" : "error"), afterAction });
  }
}

async function confirm() {
  if (isBusy(button)) return;
  // Busy, not disabled: the focus stays on the button while the device asks.
  setBusy(button, true);
  root.dataset.outcome = "working";
  const afterAction = true;
  let credential;
  try {
    credential = await navigator.credentials.get({ publicKey: parseRequestOptions(config.publicKey) });
  } catch (error) {
    reportBrowserError(error, afterAction);
    return;
  }
  try {
    const result = await post(config.finalizeUrl, { handle: config.handle, credential: credentialToJSON(credential) });
    report("confirmed", { code: "confirmed", token: result.token, afterAction });
  } catch (error) {
    report("failed", { code: error.code, afterAction });
  }
}


async function start() {
  reportHeight(target);
  if (config.error) {
    report("failed", { code: config.error.code });
    return;
  }
  const problem = await detectProblem("get", ["publickey-credentials-get"]);
  if (problem) {
    report("failed", { code: problem });
    return;
  }
  button.addEventListener("click", confirm);
  setBusy(button, false);
  root.dataset.outcome = "ready";
}

start();
