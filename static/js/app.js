// poolboard's only script besides htmx. Polled regions carry their own hx-trigger
// ("every 10s, visibilitychange from:document"), so nothing here runs a timer.

// A hidden tab does not poll: an on-call laptop with twenty tabs open must not load the
// server twenty times over. Done here rather than with an hx-trigger filter
// ("every 10s [document.visibilityState === 'visible']") because htmx evaluates filters
// with eval, which the Content-Security-Policy forbids. Turning visible again fires the
// visibilitychange trigger, so the page catches up at once.
document.addEventListener("htmx:beforeRequest", function (event) {
  var trigger = event.detail.elt.getAttribute("hx-trigger") || "";
  if (document.visibilityState !== "visible" && /\bevery\b|visibilitychange/.test(trigger)) {
    event.preventDefault();
  }
});
document.addEventListener("htmx:responseError", function (event) {
  // Keep the last good content on screen and say the refresh failed, instead of blanking it.
  var target = event.detail.target;
  if (target) target.setAttribute("data-refresh-failed", "true");
});
document.addEventListener("htmx:afterSwap", function (event) {
  if (event.detail.target) event.detail.target.removeAttribute("data-refresh-failed");
});
