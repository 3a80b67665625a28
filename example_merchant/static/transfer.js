// The bank's own page confirms a transfer with the cardholder's passkey, as the
// Hanko Passkey API's "Example payment transaction" does: the backend starts the
// transaction, the page calls navigator.credentials.get() with its publicKey,
// and the credential goes back as-is. This page shows the amount itself: a plain
// passkey prompt does not (the result's trans.method says "passkey").
import { credentialToJSON, parseRequestOptions } from "/spc/widget/webauthn-json.js";

const button = document.getElementById("transfer-button");
const result = document.getElementById("transfer-result");

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.message || "the bank could not answer");
  return answer;
}

button.addEventListener("click", async () => {
  button.disabled = true;
  result.textContent = "Waiting for your device…";
  try {
    const options = await post("/api/transfers");
    const credential = await navigator.credentials.get({ publicKey: parseRequestOptions(options.publicKey) });
    const confirmed = await post("/api/transfers/confirm", credentialToJSON(credential));
    result.dataset.outcome = confirmed.outcome;
    result.dataset.method = confirmed.method;
    result.textContent = "Done: the transfer is confirmed.";
  } catch (error) {
    result.dataset.outcome = "failed";
    result.textContent = error.name === "NotAllowedError" ? "Not confirmed: the device prompt was closed."
      : `Not confirmed: ${error.message}`;
  } finally {
    button.disabled = false;
  }
});
