// poolboard's only script besides htmx. Polled regions carry their own hx-trigger
// ("every 10s" filtered on document visibility), so nothing here runs a timer.
document.addEventListener("htmx:responseError", function (event) {
  // Keep the last good content on screen and say the refresh failed, instead of blanking it.
  var target = event.detail.target;
  if (target) target.setAttribute("data-refresh-failed", "true");
});
document.addEventListener("htmx:afterSwap", function (event) {
  if (event.detail.target) event.detail.target.removeAttribute("data-refresh-failed");
});
