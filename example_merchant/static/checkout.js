// The shop's checkout: pay with Secure Payment Confirmation where the browser
// can, in the bank's fallback iframe where it cannot, and with the bank's own
// step-up (a one-time code) the first time or when the customer prefers.
//
// spc-merchant.js comes from the bank (it is part of spc-embed); this file is
// the glue every merchant writes: call its own backend, show the outcome.

const config = JSON.parse(document.getElementById("shop-config").textContent);
const spc = await import(config.merchantScript);

const $ = (id) => document.getElementById(id);
const payButton = $("pay-button");
const statusBox = $("checkout-status");
const slot = $("bank-frame-slot");

const METHODS = {
  spc: "Secure Payment Confirmation",
  fallback: "this device, in your bank's frame",
  "one-time code": "a one-time code from your bank",
};
const ENROLMENT_TEXT = {
  enrolled: "This device is set up: next time, confirm with your fingerprint, face or screen lock.",
  already_enrolled: "This device is already set up with your bank.",
  cancelled: "Set-up was cancelled. You can try again in the frame above.",
};

let current = null; // {order, init} of the payment in progress

function status(state, text) {
  statusBox.dataset.state = state;
  statusBox.textContent = text;
}

function offer(...ids) {
  $("checkout-actions").hidden = ids.length === 0;
  for (const id of ["retry-spc", "use-code"]) $(id).hidden = !ids.includes(id);
}

async function api(path, body = {}) {
  const response = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.message || `HTTP ${response.status}`), { code: data.code });
  return data;
}

function guarded(step) {
  return async () => {
    try {
      await step();
    } catch (error) {
      status("error", `Something went wrong: ${error.message}. You can try again.`);
      offer();
      slot.replaceChildren();
      payButton.hidden = false;
      payButton.disabled = false;
    }
  };
}

const orderPath = (suffix) => `/api/orders/${encodeURIComponent(current.order.id)}/${suffix}`;

async function startPayment() {
  payButton.disabled = true;
  offer();
  slot.replaceChildren();
  status("working", "Asking your bank…");
  // Both at once: show() must run soon after the click that allowed it.
  const [available, started] = await Promise.all([spc.availability(), api("/api/checkout")]);
  current = started;
  if (!started.init.secure_payment_confirmation?.credentialIds?.length) {
    status("step-up", "Your bank wants to make sure it's you.");
    return stepUp({ offerEnrolment: true });
  }
  if (available.status !== "available") {
    return fallback(`This browser can't show Secure Payment Confirmation (${available.reason}): confirm in your bank's frame.`);
  }
  return confirmWithSpc();
}

async function confirmWithSpc() {
  offer();
  status("working", "Confirm the payment in your browser's dialog…");
  const result = await spc.confirmPayment(current.init, { optOutUrl: config.optOutUrl, label: "Demo Shop order" });
  statusBox.dataset.outcome = result.outcome;
  switch (result.outcome) {
    case "confirmed":
      // The credential goes to our backend, which finalizes with the bank and verifies the token.
      status("working", "Confirmed. Checking your bank's signed result…");
      return paid(await api(orderPath("confirm"), { credential: result.credential }));
    case "cancelled":
      status("cancelled", "You closed the confirmation. Try again, or use a one-time code.");
      return offer("retry-spc", "use-code");
    case "authenticate_another_way":
      status("step-up", "No problem: your bank will check it's you another way.");
      return stepUp({ offerEnrolment: true });
    case "opted_out":
      // The bank was told (optOutUrl); we stop offering it too, and pay the usual way.
      status("step-up", "Understood: you won't be asked to confirm with this device here. Your bank will check it's you another way.");
      return stepUp({ offerEnrolment: false });
    case "unavailable":
      return fallback("This browser can't show Secure Payment Confirmation: confirm in your bank's frame.");
    default:
      status("error", `The confirmation did not work (${result.code}). You can use a one-time code instead.`);
      return offer("use-code");
  }
}

function fallback(text) {
  status("fallback", text);
  offer();
  payButton.hidden = true;
  spc.mountFallback(slot, current.init.fallback_url, {
    issuerOrigin: config.bankOrigin, title: "Confirm your payment with Demo Bank", height: "330",
    onMessage: (message) => guarded(async () => {
      if (message.transactionId !== current.order.id) return;
      if (message.outcome === "confirmed") {
        status("working", "Confirmed. Checking your bank's signed result…");
        // A token from a frame is only a claim until our backend has verified it.
        await paid(await api(orderPath("token"), { token: message.token }));
      } else if (message.outcome === "cancelled") {
        status("cancelled", "Cancelled. Try again in your bank's frame, or use a one-time code.");
        offer("use-code");
      } else {
        status("fallback-failed", `Your bank could not confirm here (${message.code}). Use a one-time code instead.`);
        offer("use-code");
      }
    })(),
  });
}

function bankFrame(url, title, height) {
  payButton.hidden = true;
  const frame = document.createElement("iframe");
  Object.assign(frame, { src: url, title, height, width: "100%" });
  frame.id = "step-up-frame";
  slot.replaceChildren(frame);
  return frame;
}

async function stepUp({ offerEnrolment }) {
  offer();
  const { url } = await api(orderPath("step-up"));
  const frame = bankFrame(url, "Verify it's you with Demo Bank", "320");
  const outcome = await new Promise((resolve) => {
    const listener = (event) => {
      // Only the bank, only from this frame.
      if (event.origin !== config.bankOrigin || event.source !== frame.contentWindow) return;
      if (event.data?.source !== "demo-bank" || event.data.type !== "step-up") return;
      window.removeEventListener("message", listener);
      resolve(event.data.outcome);
    };
    window.addEventListener("message", listener);
  });
  if (outcome !== "passed") {
    status("error", "Your bank could not verify you, so the payment did not go through.");
    payButton.hidden = false;
    payButton.disabled = false;
    return;
  }
  status("working", "Verified by your bank. Completing your order…");
  const receipt = await api(orderPath("step-up/result"));
  await paid(receipt);
  if (offerEnrolment && receipt.enrollment_url) offerEnrolmentFrame(receipt.enrollment_url);
}

function offerEnrolmentFrame(url) {
  $("enrolment").hidden = false;
  const result = $("enrolment-result");
  spc.mountEnrollment($("enrolment-slot"), url, {
    issuerOrigin: config.bankOrigin, title: "Set up faster checkout with Demo Bank", height: "410",
    onMessage: (message) => {
      result.dataset.outcome = message.outcome;
      // Whatever happens, the purchase is done: enrolment is an offer, not a step.
      result.textContent = ENROLMENT_TEXT[message.outcome]
        ?? `Faster checkout is not available here (${message.outcome}). You can keep paying with a code.`;
    },
  });
}

function claimRows(claims) {
  const when = (seconds) => `${seconds} (${new Date(seconds * 1000).toISOString().replace(".000", "")})`;
  return [
    ["iss", claims.iss], ["sub", claims.sub], ["aud", claims.aud], ["iat", when(claims.iat)],
    ["exp", when(claims.exp)], ["jti", claims.jti], ["cred", claims.cred], ["trans.id", claims.trans.id],
    ["trans.hash", claims.trans.hash], ["trans.method", claims.trans.method],
  ];
}

async function paid(receipt) {
  const { order, claims } = receipt;
  slot.replaceChildren();
  $("payment-panel").hidden = true;
  $("cart-link").textContent = "Cart (0)";
  const box = $("receipt");
  box.dataset.method = order.method;
  $("receipt-summary").textContent =
    `Order ${order.id} · ${order.total} ${order.currency} · confirmed with ${METHODS[order.method] ?? order.method}.`;
  if (claims) {
    $("receipt-verification").textContent = "Your bank's signed result (an ES256 JWT), verified by the shop's "
      + `backend with the bank's keys (${receipt.jwks_url}): signature, issuer, audience (this shop), expiry, `
      + "and trans.id and trans.hash against this order. Its claims:";
    const table = $("claims");
    table.replaceChildren(...claimRows(claims).map(([name, value]) => {
      const row = table.insertRow();
      row.dataset.claim = name;
      row.insertCell().textContent = name;
      row.insertCell().textContent = value;
      return row;
    }));
    table.hidden = false;
  } else {
    $("receipt-verification").textContent = "Your bank approved it after its own check (a one-time code); the "
      + "shop's backend asked the bank's backend for that result.";
  }
  box.hidden = false;
}

if (payButton) { // absent when the cart is empty
  payButton.addEventListener("click", guarded(startPayment));
  $("retry-spc").addEventListener("click", guarded(confirmWithSpc));
  $("use-code").addEventListener("click", guarded(() => stepUp({ offerEnrolment: false })));
  status("ready", "");
  payButton.disabled = false;
}
