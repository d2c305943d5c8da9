/* "Draft a reply" panel: asks the API for a draft built from knowledge-base articles, shows
 * it with its sources, fills the reply composer ("Use this draft", the agent edits and sends
 * as usual) or discards it. What became of a draft (sent as drafted, edited, discarded) is
 * decided on the server from the reply actually sent. A static file: the workbench's
 * Content-Security-Policy forbids inline scripts. Text is set with textContent only. */
(function () {
  "use strict";
  function composer() {
    return document.querySelector("[data-reply-composer]") || document.querySelector("textarea[name=body]");
  }
  function csrf() {
    var m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function post(url) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf(), "Accept": "application/json"},
      body: "{}"
    });
  }
  function httpUrl(url) {
    return /^https?:\/\//i.test(url || "") ? url : "";
  }
  function bind(panel) {
    if (panel.dataset.kbBound) return;
    panel.dataset.kbBound = "1";
    var status = panel.querySelector(".kb-draft-status");
    var result = panel.querySelector(".kb-draft-result");
    var textBox = panel.querySelector(".kb-draft-text");
    var list = panel.querySelector(".kb-draft-citations");
    var requestButton = panel.querySelector(".kb-draft-request");
    var current = null;

    function show(draft, linksRemoved) {
      current = draft;
      textBox.textContent = draft.text;
      list.replaceChildren();
      draft.citations.forEach(function (c) {
        var item = document.createElement("li");
        item.className = "kb-draft-citation";
        var href = httpUrl(c.url);
        if (href) {
          var a = document.createElement("a");
          a.href = href; a.target = "_blank"; a.rel = "noopener noreferrer";
          a.textContent = c.title;
          item.appendChild(a);
        } else {
          item.textContent = c.title;
        }
        list.appendChild(item);
      });
      result.hidden = false;
      status.textContent = draft.fallback ? "Drafted offline (the AI provider was unavailable)." : "";
      if (linksRemoved) {
        status.textContent = "The AI wrote " + linksRemoved + " link(s) or address(es) that no cited article holds: removed, marked [link removed]. Check the draft before sending.";
      }
    }

    requestButton.addEventListener("click", function () {
      requestButton.disabled = true;
      status.textContent = "Drafting…";
      result.hidden = true;
      post(panel.dataset.draftUrl).then(function (r) {
        return r.json().then(function (body) { return {ok: r.ok, body: body}; });
      }).then(function (answer) {
        if (!answer.ok) {
          var err = answer.body && answer.body.error;
          status.textContent = (err && err.message) || "Drafts are unavailable right now.";
        } else if (!answer.body.draft) {
          status.textContent = answer.body.message || "No knowledge-base article fits this ticket.";
          panel.dataset.kbNoDraft = answer.body.reason || "none";
        } else {
          show(answer.body.draft, answer.body.links_removed || 0);
        }
      }).catch(function () {
        status.textContent = "Drafts are unavailable right now.";
      }).finally(function () { requestButton.disabled = false; });
    });

    panel.querySelector(".kb-draft-use").addEventListener("click", function () {
      var box = composer();
      if (!box || !current) return;
      var reply = document.querySelector("input[name=kind][value=public]");
      if (reply && !reply.checked) {
        reply.checked = true;
        // as a click on "Reply to customer" does: the composer's button, colour and hint
        // (workbench.js listens for the change) then say what will be sent
        reply.dispatchEvent(new Event("change", {bubbles: true}));
      }
      box.value = current.text;
      box.dataset.kbDraftId = String(current.id);
      box.dispatchEvent(new Event("input", {bubbles: true}));
      box.focus();
      status.textContent = "The draft is in the reply box: edit it, then send.";
    });

    panel.querySelector(".kb-draft-discard").addEventListener("click", function () {
      if (!current) return;
      var id = current.id;
      post(panel.dataset.draftUrl + "/" + id + "/discard").then(function (r) {
        if (r.ok) {
          result.hidden = true;
          current = null;
          status.textContent = "Draft discarded.";
          var box = composer();
          if (box && box.dataset.kbDraftId === String(id)) { delete box.dataset.kbDraftId; }
        } else {
          status.textContent = "The draft could not be discarded (the server answered " + r.status + "). Try again.";
        }
      }).catch(function () {
        status.textContent = "Could not reach the server: the draft was not discarded. Check the connection and try again.";
      });
    });
  }
  document.querySelectorAll(".kb-draft").forEach(bind);
})();
