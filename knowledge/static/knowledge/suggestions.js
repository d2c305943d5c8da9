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
  // A refused or unsent feedback, said under the suggestion's buttons (cleared by a later success).
  function feedbackError(item, text) {
    var box = item.querySelector(".kb-feedback-error");
    if (!box && !text) return;
    if (!box) {
      box = document.createElement("p");
      box.className = "form-error kb-feedback-error";
      box.setAttribute("role", "alert");
      item.appendChild(box);
    }
    box.textContent = text;
    box.hidden = !text;
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
        var item = fb.closest(".kb-suggestion") || panel;
        fetch(fb.dataset.feedbackUrl, {
          method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
          body: JSON.stringify({helpful: fb.dataset.helpful === "true"})
        }).then(function (r) {
          if (r.ok) {
            // the latest answer counts: "Helpful" then "Not helpful" leaves only the second marked
            item.querySelectorAll("[data-feedback-url]").forEach(function (other) {
              if (other === fb) return;
              other.classList.remove("kb-feedback-sent");
              other.setAttribute("aria-pressed", "false");
            });
            fb.classList.add("kb-feedback-sent");
            fb.setAttribute("aria-pressed", "true");
            feedbackError(item, "");
          } else {
            feedbackError(item, "Feedback not saved (the server answered " + r.status + "). Try again.");
          }
        }).catch(function () {
          feedbackError(item, "Could not reach the server: feedback not saved. Check the connection and try again.");
        });
      }
    });
  }
  document.querySelectorAll(".kb-suggestions").forEach(bind);
})();
