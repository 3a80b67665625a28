// Secure Payment Confirmation on the merchant's checkout page.
//
//   import { availability, confirmPayment, mountEnrollment, mountFallback }
//     from "https://bank.example/spc/widget/spc-merchant.js";
//
// Nothing here throws for what a browser or a user can do: every function
// resolves to a plain object. Only programming errors (a mount URL whose
// origin is not issuerOrigin) throw.
//
// One file with no imports: every merchant page loads it, so it carries only
// what the page needs (base64url and the assertion's JSON), not the iframes'
// helpers in webauthn-json.js, and costs one request.

const METHOD = "secure-payment-confirmation";
const FEATURES = ["payment", "publickey-credentials-create", "publickey-credentials-get"];

// How show() ends, as Chromium reports it (checked in tests/browser):
const OUTCOMES = {
  AbortError: "cancelled", // the user closed the dialog
  NotAllowedError: "authenticate_another_way", // "verify another way", no matching passkey, UV refused
  OptOutError: "opted_out", // the user chose the dialog's opt-out (showOptOut)
  NotSupportedError: "unavailable", // SPC off or unsupported, or the card icon did not load
};

const unavailable = (reason) => ({ status: "unavailable", reason });

function fromBase64url(value) {
  if (typeof value !== "string" || !/^[A-Za-z0-9_-]*$/.test(value)) {
    throw new TypeError("expected an unpadded base64url string");
  }
  return Uint8Array.from(atob(value.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
}

function toBase64url(buffer) {
  let binary = "";
  for (const byte of ArrayBuffer.isView(buffer)
    ? new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength) : new Uint8Array(buffer)) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// Extension outputs may hold binary values: the issuer still needs valid JSON.
function jsonValue(value) {
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return toBase64url(value);
  if (Array.isArray(value)) return value.map(jsonValue);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonValue(v)]));
  }
  return value;
}

// PaymentResponse.details -> AuthenticationResponseJSON, by hand where the browser has no toJSON().
function assertionToJSON(credential) {
  const extensions = jsonValue(credential.getClientExtensionResults());
  if (typeof credential.toJSON === "function") {
    // Chromium's toJSON() leaves out SPC's payment output, the browser-bound key's signature.
    const json = credential.toJSON();
    if (extensions.payment) json.clientExtensionResults = { ...json.clientExtensionResults, payment: extensions.payment };
    return json;
  }
  const r = credential.response;
  const response = { clientDataJSON: toBase64url(r.clientDataJSON),
    authenticatorData: toBase64url(r.authenticatorData), signature: toBase64url(r.signature) };
  if (r.userHandle) response.userHandle = toBase64url(r.userHandle);
  return { id: credential.id, rawId: toBase64url(credential.rawId), type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined, response,
    clientExtensionResults: extensions };
}

/** {status: "available"} or {status: "unavailable", reason}. */
export async function availability() {
  if (typeof PaymentRequest !== "function") return unavailable("no-payment-request");
  try {
    if (typeof PaymentRequest.securePaymentConfirmationAvailability === "function") {
      const answer = await PaymentRequest.securePaymentConfirmationAvailability();
      return answer === "available" ? { status: answer } : unavailable(answer.replace(/^unavailable-/, ""));
    }
    // Older browsers: canMakePayment() on throwaway data tells whether SPC is supported at all.
    const bytes = new Uint8Array(16);
    const probe = new PaymentRequest([{ supportedMethods: METHOD, data: {
      rpId: "spc.invalid", challenge: bytes, credentialIds: [bytes], payeeName: "probe",
      instrument: { displayName: "probe", icon: "data:image/png;base64,iVBORw0KGgo=" },
    } }], { total: { label: "probe", amount: { currency: "USD", value: "0" } } });
    return (await probe.canMakePayment()) ? { status: "available" } : unavailable("cannot-make-payment");
  } catch (error) {
    return unavailable(error?.name || "error");
  }
}

async function post(url, body) {
  try {
    // Cross-origin to the issuer: CORS, no cookies (the assertion itself is the credential).
    const response = await fetch(url, {
      method: "POST", mode: "cors", credentials: "omit", cache: "no-store",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    return response.ok ? { ok: true, data } : { ok: false, code: data.code ?? `http_${response.status}`,
      message: data.message ?? "" };
  } catch {
    return { ok: false, code: "network_error", message: "the issuer could not be reached" };
  }
}

async function pay(init, { finalizeUrl, optOutUrl, label = "Total" }) {
  const spc = init?.secure_payment_confirmation;
  // The issuer answers an unknown user and one without passkeys alike: no ids, no instrument.
  if (!spc?.credentialIds?.length || !spc.instrument) {
    return { outcome: "unavailable", code: "no_credentials", message: "no passkey is set up for this card" };
  }
  if (typeof PaymentRequest !== "function") {
    return { outcome: "unavailable", code: "no-payment-request", message: "this browser has no PaymentRequest" };
  }
  let response;
  try {
    // Exactly what initialize returned; only the binary members are decoded.
    const data = { ...spc, challenge: fromBase64url(spc.challenge),
      credentialIds: spc.credentialIds.map(fromBase64url) };
    const request = new PaymentRequest([{ supportedMethods: METHOD, data }], { total: { label, amount: init.total } });
    response = await request.show();
  } catch (error) {
    const name = error?.name || "Error";
    const result = { outcome: OUTCOMES[name] ?? "error", code: name, message: error?.message ?? "" };
    if (result.outcome === "opted_out" && optOutUrl) {
      // The token proves this page was handed initialize's answer (an Origin alone proves nothing).
      const reported = await post(optOutUrl, { transaction_id: init.transaction_id, opt_out_token: init.opt_out_token });
      result.recorded = reported.ok;
      if (!reported.ok) Object.assign(result, { code: reported.code, message: reported.message });
    }
    return result;
  }
  let credential;
  try {
    credential = assertionToJSON(response.details);
  } catch (error) {
    await response.complete("fail").catch(() => {});
    return { outcome: "error", code: error?.name || "Error", message: error?.message ?? "" };
  }
  if (!finalizeUrl) {
    await response.complete("unknown").catch(() => {});
    return { outcome: "confirmed", credential };
  }
  const finalized = await post(finalizeUrl, { transaction_id: init.transaction_id, credential });
  await response.complete(finalized.ok ? "success" : "fail").catch(() => {});
  return finalized.ok
    ? { outcome: "confirmed", credential, token: finalized.data.token }
    : { outcome: "error", code: finalized.code, message: finalized.message, credential };
}

/**
 * Confirm a payment with SPC from the response of the issuer's /transaction/initialize.
 * Options: finalizeUrl (the issuer's /transaction/finalize: the result then carries the
 * token), optOutUrl (the issuer's /transaction/opt-out), label (of the total), onResult.
 * Resolves {outcome, code?, message?, credential?, token?, recorded?}, outcome one of
 * "confirmed" (credential: AuthenticationResponseJSON for the backend; token if finalized),
 * "cancelled", "authenticate_another_way", "opted_out" (recorded: the issuer was told),
 * "unavailable" (use mountFallback), "error" (code: the browser's or the issuer's).
 */
export async function confirmPayment(init, options = {}) {
  const result = await pay(init, options);
  options.onResult?.(result);
  return result;
}

// Each frame's purpose, for screen readers' list of frames (override with `title`).
const TITLES = { enrollment: "Set up faster checkout with your bank", payment: "Confirm your payment with your bank" };

// Follow the messages of `iframe` from exactly `origin` (docs/security.md W3) while it is in the page:
// its height reports fit it to its content (nothing cut off, nothing to scroll), within bounds; the
// rest go to `report`.
function follow(iframe, origin, report) {
  const listener = ({ origin: from, source, data }) => {
    if (!iframe.isConnected) return window.removeEventListener("message", listener);
    if (from !== origin || source !== iframe.contentWindow || data?.source !== "spc-embed") return;
    if (data.type !== "resize") return report(data);
    if (Number.isFinite(data.height)) {
      Object.assign(iframe.style, { boxSizing: "content-box",
        height: `${Math.min(Math.max(Math.ceil(data.height), 80), 2000)}px` });
    }
  };
  window.addEventListener("message", listener);
}

/** Fit an issuer iframe the page made itself (issuer_iframe() in a template) to its content. */
export const fitIssuerFrame = (iframe) => follow(iframe, new URL(iframe.src).origin, () => {});

function mount(type, container, url, { issuerOrigin, title = TITLES[type], width = "100%",
  height = "360", onMessage } = {}) {
  const origin = new URL(url, location.href).origin;
  if (issuerOrigin !== undefined && issuerOrigin !== origin) {
    throw new TypeError(`issuerOrigin ${issuerOrigin} is not the origin of the iframe URL (${origin})`);
  }
  if (typeof title !== "string" || !title.trim()) throw new TypeError("title must say what the frame is for");
  const iframe = document.createElement("iframe");
  // The page's Permissions-Policy header must delegate the same features (no sandbox: it would break WebAuthn).
  iframe.allow = FEATURES.map((feature) => `${feature} ${origin}`).join("; ");
  Object.assign(iframe, { src: url, title, width, height });
  return new Promise((resolve) => {
    let first = true;
    follow(iframe, origin, (data) => {
      if (data.type !== type || !(first || onMessage)) return;
      first = false;
      onMessage?.(data);
      resolve(data);
    });
    container.append(iframe);
  });
}

/** Show the issuer's enrolment iframe; resolves with its first report {outcome, code, ...}. */
export const mountEnrollment = (container, iframeUrl, options) => mount("enrollment", container, iframeUrl, options);

/** Show the issuer's fallback iframe (initialize's fallback_url); resolves {outcome, token?, ...}. */
export const mountFallback = (container, fallbackUrl, options) => mount("payment", container, fallbackUrl, options);
