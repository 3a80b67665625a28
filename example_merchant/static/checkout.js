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
let current = null; // {order, init} of the payment in progress

// The status line is a live region (role="status", in the page from the start): what is put in
// it is announced. When the control that had the focus goes away (the Pay button, for the bank's
// frame), the focus moves to the status line itself, and the region is quiet for that one text,
// so that it is read once.
function status(state, text, { focus = false } = {}) {
  statusBox.dataset.state = state;
  if (focus) statusBox.setAttribute("aria-live", "off");
  else statusBox.removeAttribute("aria-live");
  statusBox.textContent = text;
  if (focus) statusBox.focus();
}

// Where the keyboard was: the Pay button is hidden while the bank's frame is up.
const payButtonHadFocus = () => document.activeElement === payButton;

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
      console.error(error);  // the details are for the shop's developers, not the customer
      payButton.hidden = false;
      payButton.disabled = false;
      status("error", "Something went wrong and you have not paid. Please try again.");
      offer();
      slot.replaceChildren();
    }
  };
}

const orderPath = (suffix) => `/api/orders/${encodeURIComponent(current.order.id)}/${suffix}`;

async function startPayment() {
  if (payButton.getAttribute("aria-disabled") === "true") return;
  // Busy rather than disabled: a disabled button would drop the keyboard focus onto the page's body.
  payButton.setAttribute("aria-disabled", "true");
  offer();
  slot.replaceChildren();
  status("working", "Asking your bank…");
  // Both at once: show() must run soon after the click that allowed it.
  const [available, started] = await Promise.all([spc.availability(), api("/api/checkout")]);
  current = started;
  payButton.removeAttribute("aria-disabled");
  if (!started.init.secure_payment_confirmation?.credentialIds?.length) {
    status("step-up", "Your bank wants to make sure it's you.", { focus: payButtonHadFocus() });
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
      offer("retry-spc", "use-code");
      status("cancelled", "You closed the confirmation. Try again, or use a one-time code.",
             { focus: !document.activeElement || document.activeElement === document.body });
      return;
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
  const hadFocus = payButtonHadFocus();
  offer();
  payButton.hidden = true;
  status("fallback", text, { focus: hadFocus });
  spc.mountFallback(slot, current.init.fallback_url, {
    issuerOrigin: config.bankOrigin, title: "Confirm your payment with Demo Bank", height: "330",
    onMessage: (message) => guarded(async () => {
      if (message.transactionId !== current.order.id) return;
      if (message.outcome === "confirmed") {
        status("working", "Confirmed. Checking your bank's signed result…");
        // A token from a frame is only a claim until our backend has verified it.
        await paid(await api(orderPath("token"), { token: message.token }));
      } else if (message.outcome === "cancelled") {
        // The bank's frame has said so itself, in the customer's language, and kept its focus: no second announcement.
        status("cancelled", "");
        offer("use-code");
      } else {
        // The frame's own words for what happened (message.message, in its language lang), and what to do here.
        statusBox.dataset.code = message.code;  // for the shop's logs (and its tests), not for the customer
        status("fallback-failed", "You can use a one-time code from your bank instead.");
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
      if (event.data?.source !== "demo-bank") return;
      if (event.data.type === "resize") {
        // The bank's page says how tall it is: fit the frame to it (bounded), so nothing is cut off.
        const height = Number(event.data.height);
        // content-box: the height is the document's, whatever border the page's CSS gives frames.
        if (Number.isFinite(height)) {
          frame.style.boxSizing = "content-box";
          frame.style.height = `${Math.min(Math.max(Math.ceil(height), 100), 2000)}px`;
        }
        return;
      }
      if (event.data.type !== "step-up") return;
      window.removeEventListener("message", listener);
      resolve(event.data.outcome);
    };
    window.addEventListener("message", listener);
  });
  if (outcome !== "passed") {
    payButton.hidden = false;
    status("error", "Your bank could not verify you, so the payment did not go through.", { focus: true });
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
      // Whatever happens, the purchase is done: enrolment is an offer, not a step. The bank's frame has
      // said what happened itself, in the customer's language: the shop keeps the outcome, says nothing twice.
      result.dataset.outcome = message.outcome;
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
  $("payment-panel").hidden = true;  // the status line goes with it: the receipt's heading takes the focus below
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
  // The Pay button or the bank's frame had the focus and is gone: moving it to the heading says "Paid".
  $("receipt-heading").focus();
}

if (payButton) { // absent when the cart is empty
  payButton.addEventListener("click", guarded(startPayment));
  $("retry-spc").addEventListener("click", guarded(confirmWithSpc));
  $("use-code").addEventListener("click", guarded(() => {
    // What the status line said (the dialog was closed, the frame failed) is over: say what happens now.
    status("step-up", "Your bank will check it's you with a one-time code.",
           { focus: document.activeElement === $("use-code") });
    return stepUp({ offerEnrolment: false });
  }));
  status("ready", "");
  payButton.disabled = false;
}
