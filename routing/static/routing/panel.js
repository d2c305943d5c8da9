/* Routing panel: Accept / Override post JSON to the routing API, then reload the page.
 * A static file (no inline script): the workbench's Content-Security-Policy forbids inline
 * scripts. */
(function () {
  "use strict";
  document.querySelectorAll("form.routing-verdict[data-json]").forEach(function (form) {
    if (form.dataset.routingBound) return;
    form.dataset.routingBound = "1";
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var data = Object.fromEntries(new FormData(form));
      var token = data.csrfmiddlewaretoken; delete data.csrfmiddlewaretoken;
      if (data.decision_id) data.decision_id = parseInt(data.decision_id, 10);
      fetch(form.action, {method: "POST", headers: {"Content-Type": "application/json", "X-CSRFToken": token}, body: JSON.stringify(data), credentials: "same-origin"})
        .then(function (r) { if (r.ok) { window.location.reload(); } else { r.text().then(alert); } });
    });
  });
})();
