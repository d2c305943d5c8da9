/* Knowledge-base suggestions panel: "Insert into reply" and helpful / not helpful.
 * A static file (no inline script): the workbench's Content-Security-Policy forbids inline
 * scripts. Binds every .kb-suggestions panel once. */
(function () {
  "use strict";
  function composer() {
    return document.querySelector("[data-reply-composer]") || document.querySelector("textarea[name=body]");
  }
  function csrf() {
    var m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function bind(panel) {
    if (panel.dataset.kbBound) return;
    panel.dataset.kbBound = "1";
    panel.addEventListener("click", function (ev) {
      var insert = ev.target.closest("[data-insert-text]");
      if (insert && !insert.dataset.kbHandled) {
        var box = composer();
        if (!box) return;
        var text = insert.getAttribute("data-insert-text");
        var start = box.selectionStart || box.value.length;
        var before = box.value.slice(0, start), after = box.value.slice(box.selectionEnd || start);
        var sep = before && !before.endsWith("\n") ? "\n\n" : "";
        box.value = before + sep + text + after;
        box.dispatchEvent(new Event("input", {bubbles: true}));
        box.focus();
        return;
      }
      var fb = ev.target.closest("[data-feedback-url]");
      if (fb) {
        fetch(fb.dataset.feedbackUrl, {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
          body: JSON.stringify({helpful: fb.dataset.helpful === "true"})
        }).then(function (r) { if (r.ok) { fb.classList.add("kb-feedback-sent"); fb.setAttribute("aria-pressed", "true"); } });
      }
    });
  }
  document.querySelectorAll(".kb-suggestions").forEach(bind);
})();
