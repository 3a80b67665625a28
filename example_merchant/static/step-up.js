// The bank's step-up page tells the shop's page how it ended, once, and only
// to the shop's exact origin. The shop learns the *result* from the bank's
// backend, server to server; this message only says "ask now".
const report = JSON.parse(document.getElementById("step-up-report").textContent);

// A wrong code reloads the page: put the focus back on the code, whose description is the error.
const code = document.getElementById("code");
if (code?.getAttribute("aria-invalid") === "true") {
  code.focus();
  code.select();
}
if (report.outcome !== "pending" && window.parent !== window) {
  const { targetOrigin, ...message } = report;
  window.parent.postMessage(message, targetOrigin);
}

// The page's height, to the shop only, whenever it changes: the shop sizes the frame to fit it.
if (window.parent !== window) {
  // The root element's box: the body and the margins of what it holds (the viewport plays no part).
  const content = document.documentElement;
  let reported = 0;
  new ResizeObserver(() => {
    const height = Math.ceil(content.getBoundingClientRect().height);
    if (height === reported) return;
    reported = height;
    window.parent.postMessage({ source: "demo-bank", type: "resize", height }, report.targetOrigin);
  }).observe(content);
}
