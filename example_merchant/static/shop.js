// The shop's checkout: listen for the bank iframe's outcome.
// Only messages from the bank's exact origin count (SECURITY W3).

const config = JSON.parse(document.getElementById("shop-config").textContent);
const result = document.getElementById("enrolment-result");

const SHOP_TEXT = {
  enrolled: "This device is set up: next time, confirm with your fingerprint, face or screen lock.",
  already_enrolled: "This device is already set up with your bank.",
};

window.addEventListener("message", (event) => {
  if (event.origin !== config.bankOrigin) return;
  const data = event.data;
  if (!data || data.source !== "spc-embed" || data.type !== "enrollment") return;
  result.dataset.outcome = data.outcome;
  // Whatever the outcome, the purchase goes on: enrolment is an offer, not a step.
  result.textContent = SHOP_TEXT[data.outcome] ?? `Faster checkout is not available (${data.outcome}). You can pay as usual.`;
});
