// What both issuer frames do for the cardholder, apart from WebAuthn: tell the
// merchant page how tall they are, and show each outcome so that it is seen,
// heard once, and keeps the keyboard in place.

/** The JSON in <script type="application/json" id=…>, or {} where a page lacks it. */
export function readJSON(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : {};
}

/**
 * The merchant page that frames us, as an exact origin: the one the issuer named, else the
 * browser-reported parent (only ever a configured merchant: frame-ancestors let no one else frame us).
 */
export function parentOrigin(named, { reportedToo = true } = {}) {
  if (named) return named;
  const reported = window.location.ancestorOrigins?.[0];
  return reportedToo && reported && reported !== "null" ? reported : null;
}

/**
 * Report the content's height to the merchant page whenever it changes, as
 * {source: "spc-embed", type: "resize", height} to `targetOrigin` only, so
 * spc-merchant.js can size the iframe to fit: nothing is cut off, nothing scrolls.
 */
export function reportHeight(targetOrigin) {
  if (window.parent === window || !targetOrigin) return;
  // The root element's box: everything the page holds, margins included, whatever a template adds
  // (its height is the content's, not the viewport's, so the frame can shrink as well as grow).
  const content = document.documentElement;
  let reported = 0;
  const send = () => {
    const height = Math.ceil(content.getBoundingClientRect().height);
    if (height === reported) return;
    reported = height;
    window.parent.postMessage({ source: "spc-embed", type: "resize", height }, targetOrigin);
  };
  new ResizeObserver(send).observe(content);
  send();
}

/**
 * A button that stays focusable while its step runs: `disabled` would throw the
 * keyboard focus out to the page's body, so it is only marked busy.
 */
export function setBusy(button, busy) {
  button.disabled = false;
  if (busy) button.setAttribute("aria-disabled", "true");
  else button.removeAttribute("aria-disabled");
}

export const isBusy = (button) => button.getAttribute("aria-disabled") === "true";

/**
 * Show an outcome in the status region (role="status", in the page from the start).
 *
 * Announced once: when the cardholder's control stays (a retry), by the live
 * region while focus stays on the control; when the control goes away, by
 * moving focus to the message itself, with the live region quiet for it, so a
 * screen reader does not read it twice. Focus only moves after the
 * cardholder acted in this frame (`afterAction`): a frame never takes the
 * focus from the merchant's page on its own.
 */
export function showOutcome(statusBox, text, { success, button, keepButton, afterAction }) {
  const moveFocus = afterAction && !keepButton;
  if (moveFocus) statusBox.setAttribute("aria-live", "off");
  else statusBox.removeAttribute("aria-live");
  statusBox.textContent = text;
  statusBox.className = success ? "spc-status spc-success" : "spc-status spc-problem";
  button.hidden = !keepButton;
  if (moveFocus) statusBox.focus();
}
