/* Supervisor dashboard: refresh the widgets an outbox event touches (workbench.js owns the
 * socket and re-dispatches each event as "workbench:event"), and the filter form's
 * custom dates. No framework, no inline script (CSP). */
(function () {
  "use strict";
  var pending = new Set();
  var timer = null;

  function matches(widget, type) {
    var wanted = (widget.dataset.liveEvents || "").split(" ").filter(Boolean);
    return wanted.some(function (w) { return w === type || (w.slice(-1) === "." && type.indexOf(w) === 0); });
  }

  function refresh(widget) {
    var body = widget.querySelector(".widget-body");
    widget.classList.add("refreshing");
    return fetch(widget.dataset.fragmentUrl, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        body.innerHTML = html;
        body.removeAttribute("aria-busy");
        widget.dataset.refreshedAt = String(Date.now());
      })
      .catch(function () {
        // Keep the last figures (the next event tries again); a lazy widget has none yet.
        if (body.hasAttribute("data-lazy") && body.getAttribute("aria-busy") === "true") {
          body.removeAttribute("aria-busy");
          var note = document.createElement("p");
          var retry = document.createElement("button");
          note.className = "error small";
          note.setAttribute("role", "alert");
          retry.type = "button";
          retry.className = "link";
          retry.textContent = "Try again";
          retry.addEventListener("click", function () {
            var loading = document.createElement("p");
            loading.className = "muted small";
            loading.textContent = "Loading…";
            body.replaceChildren(loading);
            body.setAttribute("aria-busy", "true");
            refresh(widget);
          });
          note.append("Could not load this widget. ", retry, " or reload the page.");
          body.replaceChildren(note);
        }
      })
      .then(function () { widget.classList.remove("refreshing"); });
  }

  function flush() {
    var names = Array.from(pending);
    pending.clear();
    names.forEach(function (name) {
      var widget = document.querySelector('.widget[data-widget="' + name + '"]');
      if (widget) refresh(widget);
    });
  }

  document.addEventListener("workbench:event", function (e) {
    var type = (e.detail && e.detail.event_type) || "";
    document.querySelectorAll(".widget[data-live-events]").forEach(function (widget) {
      if (matches(widget, type)) pending.add(widget.dataset.widget);
    });
    if (pending.size) { clearTimeout(timer); timer = setTimeout(flush, 400); }
  });

  function setupFilters() {
    var form = document.getElementById("dash-filters");
    if (!form) return;
    var range = document.getElementById("f-range");
    var dates = [document.getElementById("f-start"), document.getElementById("f-end")];
    function sync() {
      var custom = range.value === "custom";
      dates.forEach(function (d) { d.disabled = !custom; d.closest("label").classList.toggle("muted", !custom); });
    }
    range.addEventListener("change", function () { sync(); if (range.value !== "custom") form.requestSubmit(); });
    dates.forEach(function (d) { d.addEventListener("change", function () { range.value = "custom"; sync(); }); });
    ["f-team", "f-channel"].forEach(function (id) {
      document.getElementById(id).addEventListener("change", function () { form.requestSubmit(); });
    });
    sync();
  }
  setupFilters();
  // Widgets the page left out ("lazy"): loaded from their fragments right away.
  document.querySelectorAll(".widget-body[data-lazy]").forEach(function (body) {
    refresh(body.closest(".widget"));
  });
})();
