/* Workbench: live updates over /ws/workbench/, presence, keyboard shortcuts, bulk
 * selection and the composer. No framework; htmx (vendored by django-htmx) swaps HTML. */
(function () {
  "use strict";
  var body = document.body;
  var page = body.dataset.page || "";
  var ticketId = body.dataset.ticketId ? parseInt(body.dataset.ticketId, 10) : null;
  var lastEventId = parseInt(body.dataset.lastEventId || "0", 10);
  var seen = new Set();
  var statusEl = document.getElementById("live-status");
  // Drawn hidden: without this script there is no live connection and no shortcut.
  document.querySelectorAll("#live-status, [data-help-open]").forEach(function (el) {
    el.hidden = false;
  });
  var socket = null;
  var retry = 0;
  // Close codes of /ws/workbench/ (tickets/consumers.py): the user may not use the
  // workbench; or the session the socket was opened with no longer signs the user in, who
  // may hold a newer one (their password change, a sign-in again, a key rotation moved it
  // to a new key): one reconnect at once, with the browser's cookie, finds out which.
  var CLOSE_SIGNED_OUT = 4401;
  var CLOSE_SESSION_CHANGED = 4409;
  var sessionRetriedAt = -Infinity;  // at most one such reconnect a minute: never a loop
  var refreshTimer = null;
  var heartbeatTimer = null;
  // Set while a plain form submission is taking this page away: a live refresh then could
  // start a second navigation (a merged ticket's refresh redirects) that cancels the
  // form's and loses its result and notice. Cleared after a while in case the answer was a
  // download, which leaves the page where it is.
  var leavingUntil = 0;

  function setStatus(state, text) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusEl.textContent = text;
  }

  // --- live events -------------------------------------------------------------
  function scheduleRefresh(fn) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(fn, 120);
  }

  function leaving() {
    return Date.now() < leavingUntil;
  }

  document.addEventListener("submit", function (e) {
    // htmx forms and cancelled confirmations have had their default prevented by now.
    if (!e.defaultPrevented) leavingUntil = Date.now() + 10000;
  });

  function refreshInbox() {
    var list = document.getElementById("inbox-list");
    if (!list || !window.htmx) return;
    var checked = Array.from(document.querySelectorAll("#inbox-list input[name=ids]:checked"));
    if (checked.length || leaving()) return; // do not wipe a selection the agent is building
    htmx.ajax("GET", window.location.pathname + window.location.search, {
      target: "#inbox-list", swap: "innerHTML", headers: { "HX-Target": "inbox-list" }
    });
  }

  function refreshTicket() {
    if (leaving()) return;
    var live = document.getElementById("ticket-live");
    if (live && window.htmx) htmx.trigger(live, "refresh");
  }

  function handleEvent(event) {
    if (!event || typeof event.id !== "number") return;
    if (seen.has(event.id)) return;
    seen.add(event.id);
    if (event.id > lastEventId) lastEventId = event.id;
    body.dataset.lastEventId = String(lastEventId);
    // Other page scripts (the dashboard) react to events without a socket of their own.
    document.dispatchEvent(new CustomEvent("workbench:event", { detail: event }));
    if (leaving()) return;
    if (page === "inbox") scheduleRefresh(refreshInbox);
    if (page === "ticket" && event.ticket_id === ticketId) scheduleRefresh(refreshTicket);
  }

  // sessionChanged: this is the reconnect a CLOSE_SESSION_CHANGED gets.
  function connect(sessionChanged) {
    var proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    var url = proto + "//" + window.location.host + "/ws/workbench/?since=" + lastEventId;
    var opened = false;
    socket = new WebSocket(url);
    socket.onopen = function () {
      opened = true;
      retry = 0;
      // Keeps this browser counted as online on the supervisors' dashboard.
      clearInterval(heartbeatTimer);
      heartbeatTimer = setInterval(function () {
        if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "heartbeat" }));
      }, 60000);
      setStatus("live", "Live");
      if (ticketId) sendPresence("viewing");
    };
    socket.onmessage = function (msg) {
      var data = JSON.parse(msg.data);
      if (data.type === "event") handleEvent(data.event);
      else if (data.type === "ready" && data.truncated) {
        // More was missed than the server replays: reload what the page shows.
        if (typeof data.last_event_id === "number" && data.last_event_id > lastEventId) {
          lastEventId = data.last_event_id;
          body.dataset.lastEventId = String(lastEventId);
        }
        if (page === "inbox") scheduleRefresh(refreshInbox);
        if (page === "ticket") scheduleRefresh(refreshTicket);
      }
      else if (data.type === "presence" && data.ticket_id === ticketId) showPresence(data.agents);
    };
    socket.onclose = function (ev) {
      // A handshake the server refuses (CLOSE_SIGNED_OUT before accepting) reaches a
      // browser as a close with no code of ours (1006, the server answered 403): the
      // reconnect after CLOSE_SESSION_CHANGED that never opened found no sign-in.
      if (ev.code === CLOSE_SIGNED_OUT || (sessionChanged && !opened)) {
        setStatus("off", "Signed out");
        return;
      }
      setStatus("reconnecting", "Reconnecting…");
      if (ev.code === CLOSE_SESSION_CHANGED && Date.now() - sessionRetriedAt > 60000) {
        sessionRetriedAt = Date.now();
        connect(true);
        return;
      }
      retry = Math.min(retry + 1, 6);
      setTimeout(function () { connect(false); }, 250 * Math.pow(2, retry - 1) + Math.random() * 250);
    };
  }

  // --- presence (collision detection) ----------------------------------------------
  var typingTimer = null;
  var typing = false;

  function sendPresence(state) {
    if (socket && socket.readyState === WebSocket.OPEN && ticketId) {
      socket.send(JSON.stringify({ type: "presence", ticket_id: ticketId, state: state }));
    }
  }

  function showPresence(agents) {
    var box = document.getElementById("presence");
    if (!box) return;
    var myId = parseInt(body.dataset.userId || "0", 10);
    var others = agents.filter(function (a) { return a.id !== myId; });
    if (!others.length) { box.textContent = ""; box.hidden = true; return; }
    box.hidden = false;
    box.textContent = "";
    others.forEach(function (a) {
      var span = document.createElement("span");
      span.className = "who-" + a.state;
      span.textContent = a.name + (a.state === "typing" ? " is typing…" : " is viewing");
      box.appendChild(span);
    });
  }

  // --- composer -------------------------------------------------------------------
  function composerMode(kind) {
    var form = document.getElementById("composer");
    if (!form) return;
    var radio = form.querySelector("input[name=kind][value=" + kind + "]");
    if (radio) radio.checked = true;
    updateComposer();
    document.getElementById("composer-body").focus();
  }

  function updateComposer() {
    var form = document.getElementById("composer");
    if (!form) return;
    var kind = form.querySelector("input[name=kind]:checked").value;
    form.classList.toggle("is-note", kind === "internal_note");
    document.getElementById("composer-send").textContent = kind === "internal_note" ? "Add internal note" : "Send reply";
    var hint = document.getElementById("composer-hint");
    if (hint) {
      hint.dataset.reply = hint.dataset.reply || hint.textContent;
      hint.textContent = kind === "internal_note" ? "Only agents see internal notes; nothing is sent to the customer." : hint.dataset.reply;
    }
    // files: a public reply's picker offers what the channel takes; a note takes any file
    var files = document.getElementById("composer-files");
    var filesHint = document.getElementById("composer-files-hint");
    if (files) {
      if (kind === "internal_note" || !files.dataset.accept) files.removeAttribute("accept");
      else files.setAttribute("accept", files.dataset.accept);
    }
    if (filesHint && filesHint.dataset.note) {
      filesHint.dataset.full = filesHint.dataset.full || filesHint.textContent;
      filesHint.textContent = kind === "internal_note" ? filesHint.dataset.note : filesHint.dataset.full;
    }
    updateCount();
    checkFiles();
  }

  // The characters of a public reply against its channel's limit (the server counts the
  // same: code points, a line break once), or its UTF-8 bytes where the channel counts
  // bytes (data-max-bytes: Instagram); notes go nowhere and show no count. The server's
  // check decides.
  function updateCount() {
    var form = document.getElementById("composer");
    var textarea = document.getElementById("composer-body");
    var count = document.getElementById("composer-count");
    if (!form || !textarea || !count) return;
    var files = document.getElementById("composer-files");
    // a reply of files alone needs no text
    textarea.required = !(files && files.files && files.files.length);
    var bytes = parseInt(textarea.dataset.maxBytes || "", 10);
    var max = bytes || parseInt(textarea.dataset.maxChars || "", 10);
    var kind = form.querySelector("input[name=kind]:checked").value;
    if (kind === "internal_note" || !max) { count.hidden = true; return; }
    // the server stores a line break as one "\n" (the browser's value has no CR either)
    var used = bytes ? new TextEncoder().encode(textarea.value).length : Array.from(textarea.value).length;
    count.hidden = false;
    count.textContent = used.toLocaleString("en") + " / " + max.toLocaleString("en") + (bytes ? " bytes" : " characters");
    count.classList.toggle("over", used > max);
  }

  // Sizes as the server states them (tickets.reply_rules.size_words): decimal units.
  function sizeWords(size) {
    if (size >= 1000000) return (size / 1000000).toFixed(1).replace(/\.0$/, "") + " MB";
    if (size >= 1000) return (size / 1000).toFixed(1).replace(/\.0$/, "") + " KB";
    return size + " bytes";
  }

  // The largest file of a type on the reply's channel and the files it covers in words:
  // the first rule of data-max-file-bytes-by-type that matches (a prefix ending in "/" or
  // the exact type), else data-max-file-bytes (data-other-files). 0: no limit.
  function fileRule(files, type) {
    var kind = (type || "").split(";")[0].trim().toLowerCase();
    var rules = [];
    try { rules = JSON.parse(files.dataset.maxFileBytesByType || "[]"); } catch (e) { rules = []; }
    for (var i = 0; i < rules.length; i++) {
      var prefix = rules[i][0];
      if (prefix.slice(-1) === "/" ? kind.indexOf(prefix) === 0 : kind === prefix) {
        return { max: rules[i][1], words: rules[i][2] };
      }
    }
    return { max: parseInt(files.dataset.maxFileBytes || "0", 10) || 0, words: files.dataset.otherFiles || "files" };
  }

  // A chosen file too large for the reply's channel (public replies only: notes go
  // nowhere), or files together over one message's cap, said by the picker at once in the
  // server's words, naming the file and the limit. Sending is not blocked: the server's
  // check decides, and refuses with the same words.
  function checkFiles() {
    var form = document.getElementById("composer");
    var files = document.getElementById("composer-files");
    var box = document.getElementById("composer-files-error");
    if (!form || !files || !box) return;
    var kind = form.querySelector("input[name=kind]:checked").value;
    var chosen = Array.from(files.files || []);
    var problems = [];
    if (kind !== "internal_note") {
      chosen.forEach(function (file) {
        var rule = fileRule(files, file.type);
        if (rule.max && file.size > rule.max) {
          problems.push(files.dataset.channel + " " + rule.words + " can be at most " + sizeWords(rule.max) + "; " + file.name + " is " + sizeWords(file.size) + ".");
        }
      });
    }
    var cap = parseInt(files.dataset.filesMaxTotal || "0", 10);
    var total = chosen.reduce(function (sum, file) { return sum + file.size; }, 0);
    if (cap && total > cap) {
      problems.push("The files of one message can be at most " + sizeWords(cap) + " together; these are " + sizeWords(total) + ".");
    }
    box.textContent = problems.join(" ");
    box.hidden = !problems.length;
    // aria-invalid only as this check set it: a refused reply's page sets it too
    if (problems.length) {
      files.setAttribute("aria-invalid", "true");
      files.dataset.sizeWarned = "true";
    } else if (files.dataset.sizeWarned) {
      files.removeAttribute("aria-invalid");
      delete files.dataset.sizeWarned;
    }
  }

  function newFormKey() {  // as the server draws them: 32 hex digits
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function setupComposer() {
    var form = document.getElementById("composer");
    if (!form) return;
    var textarea = document.getElementById("composer-body");
    form.addEventListener("change", function (e) {
      if (e.target.name === "kind") updateComposer();
      if (e.target.name === "files") { updateCount(); checkFiles(); }
    });
    textarea.addEventListener("input", function () {
      updateCount();
      if (!typing) { typing = true; sendPresence("typing"); }
      clearTimeout(typingTimer);
      typingTimer = setTimeout(function () { typing = false; sendPresence("viewing"); }, 3000);
    });
    textarea.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("htmx:afterRequest", function (e) {
      if (e.detail.successful && e.detail.elt === form) {
        // a new key for the next reply (the server keeps this one's: sent again, e.g.
        // after a lost answer, it is the same reply, not a second one)
        var key = document.getElementById("composer-key");
        if (key) key.value = newFormKey();
        textarea.value = "";
        textarea.removeAttribute("aria-invalid");  // set on a page a refused reply came back to
        var files = document.getElementById("composer-files");
        if (files) { files.value = ""; files.removeAttribute("aria-invalid"); }
        updateCount();
        checkFiles();
        typing = false;
        sendPresence("viewing");
      }
    });
    var canned = document.getElementById("canned");
    if (canned) {
      canned.addEventListener("change", function () {
        if (!canned.value) return;
        var url = canned.dataset.urlTemplate.replace(/0$/, canned.value);
        fetch(url, { credentials: "same-origin" }).then(function (r) {
          if (!r.ok) throw new Error("The canned response could not be inserted (the server answered " + r.status + "). Try again.");
          return r.json();
        }).then(function (data) {
          var start = textarea.selectionStart || textarea.value.length;
          textarea.value = textarea.value.slice(0, start) + data.body + textarea.value.slice(start);
          textarea.focus();
          canned.value = "";
          updateCount();
          var box = errorBox(canned, false);
          if (box && box.dataset.canned) { box.hidden = true; box.textContent = ""; delete box.dataset.canned; }
        }).catch(function (err) {
          // by the composer, as a refused reply is said; the text typed stays
          var text = err && /^The canned/.test(err.message) ? err.message
            : "Could not reach the server: the canned response was not inserted. Check the connection and try again.";
          showError(canned, text);
          var box = errorBox(canned, false);
          if (box) box.dataset.canned = "1";
          canned.value = "";
        });
      });
    }
    updateComposer();
  }

  // --- live refreshes and the agent's edits ------------------------------------------
  // A live refresh (another agent's note, a delivery update) redraws the timeline and sends
  // the ticket's controls again out of band. Replacing them while the agent is editing them
  // lost what was typed or chosen (tags, priority, the merge box) and dropped the focus on
  // the page body, where the next keystrokes ran shortcuts ("e" resolved the ticket).
  // So: while the focus is in the controls they are not replaced (they are once it leaves);
  // otherwise they are, keeping every field the agent changed and not saved yet, and the
  // merge box open as it was. An answer to one of the controls' own forms (save, resolve,
  // take it) replaces them, focus in them or not: that form shows what was saved, the
  // others keep their unsaved edits.
  var FIELDS = "input[name], select[name], textarea[name]";
  var FOCUSABLE = "a[href], button, input, select, textarea, summary, [tabindex]";
  var swapFromControls = null;   // the form of the controls whose answer is being swapped in
  var controlsStale = false;     // a refresh left the controls as they were (being edited)
  var fieldKeyAt = 0;            // when a key was last typed into a field
  var focusLostAt = 0;           // when a swap took away the field that had the focus

  function isField(el) {
    return Boolean(el && el.nodeType === 1 &&
      (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable));
  }

  // A field's value differs from the one it was drawn with.
  function edited(field) {
    if (field.type === "hidden" || field.type === "submit" || field.type === "button") return false;
    if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
    if (field.tagName === "SELECT") {  // drawn with no option selected: the first one
      var drawn = 0;
      for (var i = 0; i < field.options.length; i++) { if (field.options[i].defaultSelected) drawn = i; }
      return field.selectedIndex !== drawn;
    }
    return field.value !== field.defaultValue;
  }

  // Where a field or button sits in a container: its position among the container's
  // focusable elements, with its tag and name to check that the redrawn one is the same.
  function placeOf(el, container) {
    var all = Array.prototype.slice.call(container.querySelectorAll(FOCUSABLE));
    var i = all.indexOf(el);
    return i === -1 ? null : { index: i, tag: el.tagName, name: el.getAttribute("name") || "", id: el.id };
  }

  function findPlace(place, container) {
    if (!place) return null;
    if (place.id) { var byId = document.getElementById(place.id); if (byId && container.contains(byId)) return byId; }
    var el = container.querySelectorAll(FOCUSABLE)[place.index];
    return el && el.tagName === place.tag && (el.getAttribute("name") || "") === place.name ? el : null;
  }

  // A form told apart from the others of the controls (the quick ones post to the same
  // URL): its id, or the names of its fields.
  function formKey(form) {
    return form.id || Array.prototype.map.call(form.querySelectorAll(FIELDS), function (f) { return f.name; }).join(",");
  }

  // The same field in the redrawn controls: the nth field of that name in the same form
  // (a quick form can come and go: "Resolve" is not drawn for a resolved ticket).
  function counterpart(field, oldRoot, newRoot) {
    var form = field.form;
    if (!form) return null;
    var key = formKey(form);
    var newForm = Array.prototype.filter.call(newRoot.querySelectorAll("form"), function (f) { return formKey(f) === key; })[0];
    if (!newForm) return null;
    var same = Array.prototype.filter.call(form.querySelectorAll(FIELDS), function (f) { return f.name === field.name; });
    var newSame = Array.prototype.filter.call(newForm.querySelectorAll(FIELDS), function (f) { return f.name === field.name; });
    var candidate = newSame[same.indexOf(field)];
    return candidate && candidate.tagName === field.tagName && candidate.type === field.type ? candidate : null;
  }

  function keepEdits(oldRoot, newRoot, savedForm) {
    oldRoot.querySelectorAll(FIELDS).forEach(function (field) {
      if (!edited(field) || (savedForm && field.form === savedForm)) return;  // saved: as drawn now
      var other = counterpart(field, oldRoot, newRoot);
      if (!other) return;
      if (field.type === "checkbox" || field.type === "radio") other.checked = field.checked;
      else if (field.tagName === "SELECT") {
        // an option the redrawn list no longer offers (a status no longer allowed) is not kept
        if (Array.prototype.some.call(other.options, function (o) { return o.value === field.value; })) other.value = field.value;
      } else other.value = field.value;
    });
    var details = oldRoot.querySelectorAll("details");
    newRoot.querySelectorAll("details").forEach(function (d, i) {
      if (details[i] && details[i].open && !d.open) d.open = true;
    });
  }

  // Focus before a swap, by container (#ticket-live, #ticket-controls), to put it back on
  // the redrawn element when the swap removed it.
  var focusBefore = {};

  function noteFocus(container) {
    var active = document.activeElement;
    if (!container) return;
    delete focusBefore[container.id];
    if (!active || active === body || !container.contains(active)) return;
    focusBefore[container.id] = {
      place: placeOf(active, container), field: isField(active),
      start: active.selectionStart, end: active.selectionEnd
    };
  }

  function restoreFocus(id) {
    var before = focusBefore[id];
    delete focusBefore[id];
    if (!before) return;
    var active = document.activeElement;
    if (active && active !== body && document.contains(active)) return;  // still where it was
    var root = document.getElementById(id);
    var el = root ? findPlace(before.place, root) : null;
    if (el) {
      el.focus({ preventScroll: true });
      if (typeof before.start === "number" && el.setSelectionRange) {
        try { el.setSelectionRange(before.start, before.end); } catch (err) { /* not a text field */ }
      }
    } else if (before.field) {
      focusLostAt = Date.now();  // the next keystrokes are the agent's typing, not shortcuts
    }
  }

  document.addEventListener("htmx:beforeSwap", function (e) {
    var elt = e.detail.requestConfig ? e.detail.requestConfig.elt : e.detail.elt;
    var controls = document.getElementById("ticket-controls");
    swapFromControls = controls && elt && controls.contains(elt) ? (elt.closest("form") || elt) : null;
    if (swapFromControls) controlsStale = false;
    var target = e.detail.target;
    if (target && target.id === "ticket-live") noteFocus(target);
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.detail.target && e.detail.target.id === "ticket-live") restoreFocus("ticket-live");
  });
  document.addEventListener("htmx:oobBeforeSwap", function (e) {
    var target = e.detail.target;
    if (!target || target.id !== "ticket-controls") return;
    if (!swapFromControls && target.contains(document.activeElement)) {
      e.detail.shouldSwap = false;  // the agent is in there: left as it is, redrawn on leaving
      controlsStale = true;
      return;
    }
    // the form that was sent shows what was saved; the others keep what was typed in them
    keepEdits(target, e.detail.fragment, swapFromControls);
    if (swapFromControls) controlsStale = false;
    noteFocus(target);
  });
  document.addEventListener("htmx:oobAfterSwap", function () { restoreFocus("ticket-controls"); });
  document.addEventListener("focusout", function (e) {
    var controls = document.getElementById("ticket-controls");
    if (!controlsStale || !controls || !controls.contains(e.target)) return;
    if (e.relatedTarget && controls.contains(e.relatedTarget)) return;  // still in there
    setTimeout(function () {
      if (controlsStale && !controls.contains(document.activeElement)) { controlsStale = false; refreshTicket(); }
    }, 0);
  });

  // --- refusals ---------------------------------------------------------------------
  // htmx does not swap in a refused answer (400, 403, 404, 409): without this, a refused
  // reply, status change or assignment did nothing visible at all. The reason is shown by
  // the form that sent it (its own .form-error, else its card's, else one at the top of
  // the page) and what was typed stays where it was.
  function inForm(elt) { return Boolean(elt && elt.closest && elt.closest("form")); }

  function errorBox(elt, create) {
    var form = (elt && elt.closest && elt.closest("form")) || elt;
    var box = form && form.querySelector ? form.querySelector(".form-error") : null;
    if (!box && form && form.closest) {
      var card = form.closest(".card, .composer");
      if (card) box = card.querySelector(".form-error");
    }
    if (!box) box = document.getElementById("page-error");
    if (!box && create) {
      box = document.createElement("p");
      box.id = "page-error";
      box.className = "form-error";
      box.setAttribute("role", "alert");
      var main = document.getElementById("main");
      main.insertBefore(box, main.firstChild);
    }
    return box;
  }

  function showError(elt, text) {
    var box = errorBox(elt, true);
    box.textContent = text;
    box.hidden = false;
  }

  document.addEventListener("htmx:responseError", function (e) {
    var xhr = e.detail.xhr;
    var type = xhr.getResponseHeader("Content-Type") || "";
    // the views answer htmx with the reason as plain text; anything else (a whole page)
    // is not shown raw
    var text = type.indexOf("text/plain") === 0 && xhr.responseText ? xhr.responseText
      : (inForm(e.detail.elt) ? "Not saved" : "The page could not be updated") +
        " (the server answered " + xhr.status + "). Reload the page and try again.";
    showError(e.detail.elt, text);
  });
  document.addEventListener("htmx:sendError", function (e) {
    showError(e.detail.elt, inForm(e.detail.elt)
      ? "Could not reach the server: nothing was saved. Check the connection and try again."
      : "Could not reach the server to update the page. Check the connection.");
  });
  document.addEventListener("htmx:beforeRequest", function (e) {
    if (!inForm(e.detail.elt)) return;  // a live refresh leaves a refusal in view
    var box = errorBox(e.detail.elt, false);  // a new try clears the last one
    if (box) { box.hidden = true; box.textContent = ""; }
  });

  // --- inbox: selection and bulk ---------------------------------------------------
  var cursor = -1;

  function rows() { return Array.from(document.querySelectorAll("#inbox-list tr.ticket-row")); }

  function moveCursor(delta) {
    var list = rows();
    if (!list.length) return;
    cursor = Math.max(0, Math.min(list.length - 1, cursor + delta));
    list.forEach(function (r, i) { r.classList.toggle("selected", i === cursor); });
    var link = list[cursor].querySelector("a.subject");
    if (link) link.focus();
  }

  function rememberOrder() {
    var ids = rows().map(function (r) { return r.dataset.href; });
    try { sessionStorage.setItem("workbench:order", JSON.stringify(ids)); sessionStorage.setItem("workbench:inbox", window.location.href); } catch (e) { /* private mode */ }
  }

  function neighbour(delta) {
    try {
      var order = JSON.parse(sessionStorage.getItem("workbench:order") || "[]");
      var i = order.indexOf(window.location.pathname);
      if (i !== -1 && order[i + delta]) window.location.href = order[i + delta];
    } catch (e) { /* ignore */ }
  }

  function setupBulk() {
    var bulk = document.getElementById("bulk");
    if (!bulk) return;
    var action = document.getElementById("bulk-action");
    function syncValue() {
      bulk.querySelectorAll(".bulk-value").forEach(function (label) {
        var on = label.dataset.for === action.value;
        label.hidden = !on;
        label.querySelectorAll("select, input").forEach(function (el) { el.disabled = !on; });
      });
    }
    action.addEventListener("change", syncValue);
    syncValue();
    document.addEventListener("change", function (e) {
      if (e.target.id === "select-all") {
        document.querySelectorAll("#inbox-list input[name=ids]").forEach(function (c) { c.checked = e.target.checked; });
      }
      var n = document.querySelectorAll("#inbox-list input[name=ids]:checked").length;
      var count = document.getElementById("bulk-count");
      if (count) count.textContent = n ? n + " selected" : "Select tickets for bulk actions";
    });
    document.addEventListener("htmx:afterSwap", function (e) {
      if (e.detail.target && e.detail.target.id === "inbox-list") { cursor = -1; rememberOrder(); }
    });
    rememberOrder();
  }

  // --- keyboard shortcuts ----------------------------------------------------------
  var pendingG = false;

  // A key typed in a field, or one that looks like the rest of what the agent was typing:
  // focus on nothing (the page body) right after a key in a field or after a swap took the
  // field away. Single-letter shortcuts ("e" resolves) never come from typing.
  var TYPING_PAUSE_MS = 1500;

  function typingInField(e) {
    var t = e.target;
    if (isField(t)) return true;
    if (t && t !== body && t !== document.documentElement) return false;
    var now = Date.now();
    return now - fieldKeyAt < TYPING_PAUSE_MS || now - focusLostAt < TYPING_PAUSE_MS;
  }

  document.addEventListener("keydown", function (e) {
    if (isField(e.target)) fieldKeyAt = Date.now();
  }, true);
  // a click is a deliberate move: what comes after it is not the rest of a word
  document.addEventListener("pointerdown", function () { fieldKeyAt = 0; focusLostAt = 0; }, true);

  function openHelp() {
    var help = document.getElementById("help");
    if (help && !help.open) help.showModal();
  }

  document.addEventListener("click", function (e) {
    if (e.target.closest("[data-help-open]")) openHelp();
  });

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typingInField(e)) return;
    if (pendingG) {
      pendingG = false;
      if (e.key === "i") { window.location.href = "/"; }
      return;
    }
    switch (e.key) {
      case "?": e.preventDefault(); openHelp(); break;
      case "g": pendingG = true; break;
      case "/": var q = document.getElementById("q"); if (q) { e.preventDefault(); q.focus(); } break;
      case "j": if (page === "inbox") moveCursor(1); else neighbour(1); break;
      case "k": if (page === "inbox") moveCursor(-1); else neighbour(-1); break;
      case "o": case "Enter":
        if (page === "inbox" && cursor >= 0) { e.preventDefault(); window.location.href = rows()[cursor].dataset.href; }
        break;
      case "r": if (page === "ticket") { e.preventDefault(); composerMode("public"); } break;
      case "n": if (page === "ticket") { e.preventDefault(); composerMode("internal_note"); } break;
      case "e":
        var resolve = document.getElementById("resolve-form");
        if (page === "ticket" && resolve) { e.preventDefault(); resolve.requestSubmit(); }
        break;
    }
  });

  // Delegated (and before the "leaving" listener): the controls, merge form included, are
  // redrawn by live refreshes, and a listener bound to the first form was lost with it.
  document.addEventListener("submit", function (e) {
    var merge = e.target;
    if (!merge || merge.id !== "merge-form") return;
    if (!window.confirm("Merge " + body.dataset.ticketNumber + " into " + merge.into.value + "? This cannot be undone.")) {
      e.preventDefault();
      e.stopImmediatePropagation();
    }
  }, true);

  window.addEventListener("beforeunload", function () { if (ticketId) sendPresence("left"); });
  setInterval(function () { if (ticketId) sendPresence(typing ? "typing" : "viewing"); }, 15000);

  setupComposer();
  setupBulk();
  connect();
  window.workbench = { lastEventId: function () { return lastEventId; }, socket: function () { return socket; } };
})();
