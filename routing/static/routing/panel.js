/* Routing panel: Accept / Override post JSON to the routing API, then reload the page; a
 * refusal's reason (the API's error message) is shown in the panel (it was the raw JSON in
 * an alert box). While a request is in flight the form's button is disabled and a second
 * submit is ignored (a double-click sent two verdicts); a refusal or a lost connection
 * enables it again. A static file (no inline script): the workbench's
 * Content-Security-Policy forbids inline scripts. */
(function () {
  "use strict";
  document.querySelectorAll("form.routing-verdict[data-json]").forEach(function (form) {
    if (form.dataset.routingBound) return;
    form.dataset.routingBound = "1";
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (form.dataset.routingBusy) return;  // a double-click: the first request runs
      var buttons = form.querySelectorAll("button[type=submit], input[type=submit]");
      function busy(on) {
        if (on) form.dataset.routingBusy = "1"; else delete form.dataset.routingBusy;
        buttons.forEach(function (b) { b.disabled = on; });
      }
      var data = Object.fromEntries(new FormData(form));
      var token = data.csrfmiddlewaretoken; delete data.csrfmiddlewaretoken;
      if (data.decision_id) data.decision_id = parseInt(data.decision_id, 10);
      var box = form.closest(".routing-panel").querySelector(".routing-error");
      function refused(text) { box.textContent = text; box.hidden = false; busy(false); }
      box.hidden = true;
      busy(true);
      fetch(form.action, {method: "POST", headers: {"Content-Type": "application/json", "X-CSRFToken": token}, body: JSON.stringify(data), credentials: "same-origin"})
        .then(function (r) {
          if (r.ok) { window.location.reload(); return; }  // stays disabled: the page goes
          return r.json().then(function (body) {
            var err = body && body.error;
            refused((err && err.message) || ("Not saved (the server answered " + r.status + ")."));
          }, function () { refused("Not saved (the server answered " + r.status + "). Reload the page and try again."); });
        }, function () { refused("Could not reach the server: nothing was saved. Check the connection and try again."); });
    });
  });
})();
