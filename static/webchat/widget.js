/*
 * Support web chat widget. Embed on any page:
 *   <script src="https://SUPPORT_HOST/static/webchat/widget.js"
 *           data-token="WIDGET_TOKEN" data-base="https://SUPPORT_HOST" defer></script>
 * The visitor gives a name and email, then chats. Agent replies arrive over a websocket
 * (/ws/webchat/<token>/); when the socket is unavailable the widget polls.
 * The typed email is only a claim: "Verify my email" asks for a one-time code sent to
 * that address (POST /api/webchat/<token>/verify, then /verify/confirm) and links the chat
 * to the customer's record once the code is entered. Sessions expire (401 / close 4401):
 * the widget then starts over. Files an agent sends show as links under the reply; each is
 * fetched with the session (GET /api/webchat/<token>/files/<id>) and saved.
 * The visitor may send a file too (the paperclip: a picture, a PDF or a text file, up to
 * the size the session answer names): POST /api/webchat/<token>/files, with its progress
 * shown; once the chat has recorded it, the visitor can download it again from its message.
 * No dependencies, no CDN.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var token = script.getAttribute("data-token");
  var base = (script.getAttribute("data-base") || new URL(script.src).origin).replace(/\/$/, "");
  var title = script.getAttribute("data-title") || "Chat with us";
  var storeKey = "support-webchat:" + token;
  var state = JSON.parse(localStorage.getItem(storeKey) || "null");
  var lastId = 0, seen = {}, nodes = {}, socket = null, pollTimer = null;
  // What POST /api/webchat/<token>/files accepts (the server checks again, and the bytes).
  var UPLOAD_ACCEPT = ".jpg,.jpeg,.png,.gif,.webp,.pdf,.txt";

  function save() { localStorage.setItem(storeKey, JSON.stringify(state)); }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) { node.textContent = text; }
    return node;
  }
  function clientId() {
    var bytes = new Uint8Array(12);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    return "c-" + Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // The look, from the stylesheet beside this script: a link, not an inline <style> (a
  // page whose Content-Security-Policy allows no inline styles, ours included, refused it).
  var css = el("link", { rel: "stylesheet", href: new URL("widget.css", script.src).href });
  document.head.appendChild(css);

  var button = el("button", { "class": "swc-btn", type: "button", "aria-expanded": "false" }, title);
  var panel = el("div", { "class": "swc-panel", role: "dialog", "aria-label": title });
  var head = el("div", { "class": "swc-head" }, title);
  var body = el("div", { "class": "swc-body", "aria-live": "polite" });
  var error = el("div", { "class": "swc-err" });
  panel.appendChild(head); panel.appendChild(body); panel.appendChild(error);
  document.body.appendChild(panel); document.body.appendChild(button);
  button.addEventListener("click", function () {
    var open = panel.classList.toggle("open");
    button.setAttribute("aria-expanded", String(open));
  });

  function api(method, path, data) {
    var headers = { "Content-Type": "application/json" };
    if (state && state.session) { headers["X-Webchat-Session"] = state.session; }
    return fetch(base + path, {
      method: method, headers: headers, body: data ? JSON.stringify(data) : undefined
    }).then(function (r) {
      return r.json().then(function (j) {
        if (r.status === 401 && state && state.session) { expired(); }
        if (!r.ok) { throw new Error((j.error && j.error.message) || r.statusText); }
        return j;
      });
    });
  }

  function expired() {
    // The session is over (WEBCHAT_SESSION_TTL_SECONDS): forget it and start again.
    state = null; localStorage.removeItem(storeKey);
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    while (panel.lastChild && panel.lastChild !== error) { panel.removeChild(panel.lastChild); }
    body.textContent = ""; lastId = 0; seen = {};
    startView();
  }

  function fileLinks(node, files) {
    (files || []).forEach(function (f) {
      // the file needs the session header: fetched, then saved from the browser's memory
      var link = el("button", { type: "button", "class": "swc-file" }, f.name);
      link.addEventListener("click", function () { download(f); });
      node.appendChild(link);
    });
  }

  function show(msg) {
    var key = msg.id ? "id:" + msg.id : "c:" + msg.client_id;
    if (seen[key] || (msg.client_id && seen["c:" + msg.client_id] && msg.from === "visitor")) {
      if (msg.id) { seen[key] = true; lastId = Math.max(lastId, msg.id); }
      // a file this visitor sent, now recorded: its link replaces the "sending" note
      var sent = msg.client_id && nodes[msg.client_id];
      if (sent && msg.files && msg.files.length && !sent.linked) {
        sent.linked = true;
        Array.prototype.slice.call(sent.querySelectorAll(".swc-note")).forEach(function (n) {
          n.remove();
        });
        fileLinks(sent, msg.files);
      }
      return;
    }
    seen[key] = true;
    if (msg.client_id) { seen["c:" + msg.client_id] = true; }
    if (msg.id) { lastId = Math.max(lastId, msg.id); }
    var node = el("div", { "class": "swc-msg swc-" + msg.from }, msg.text);
    fileLinks(node, msg.files);
    if (msg.client_id) { nodes[msg.client_id] = node; node.linked = !!(msg.files || []).length; }
    body.appendChild(node);
    body.scrollTop = body.scrollHeight;
    return node;
  }

  function sendFile(file, text) {
    // One file (and the text typed, if any) as a message of the chat, with its progress.
    var max = (state && state.upload_max_bytes) || 0;
    if (max && file.size > max) {
      error.textContent = "This file is too large (at most " + Math.floor(max / 1e6) + " MB).";
      return;
    }
    var cid = clientId();
    var node = show({ client_id: cid, from: "visitor", text: text });
    var note = el("span", { "class": "swc-note" }, file.name + ": sending…");
    node.appendChild(note);
    var form = new FormData();
    form.append("file", file, file.name);
    form.append("client_id", cid);
    if (text) { form.append("text", text); }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", base + "/api/webchat/" + token + "/files");
    xhr.setRequestHeader("X-Webchat-Session", state.session);
    xhr.upload.onprogress = function (ev) {
      if (ev.lengthComputable) {
        note.textContent = file.name + ": sending… " + Math.round(100 * ev.loaded / ev.total) + "%";
      }
    };
    xhr.onload = function () {
      var j = {};
      try { j = JSON.parse(xhr.responseText); } catch (e) { j = {}; }
      if (xhr.status === 401) { expired(); return; }
      if (xhr.status < 200 || xhr.status >= 300) {
        note.textContent = file.name + ": not sent";
        error.textContent = (j.error && j.error.message) || "The file could not be sent.";
        return;
      }
      note.textContent = file.name + ": sent";
      error.textContent = "";
      // the link to download it again comes with the recorded message
      setTimeout(poll, 1500); setTimeout(poll, 6000);
    };
    xhr.onerror = function () {
      note.textContent = file.name + ": not sent";
      error.textContent = "The file could not be sent; check your connection.";
    };
    xhr.send(form);
  }

  function download(file) {
    fetch(base + "/api/webchat/" + token + "/files/" + file.id, {
      headers: { "X-Webchat-Session": state.session }
    }).then(function (r) {
      if (!r.ok) { throw new Error("This file is not available any more."); }
      return r.blob();
    }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      var a = el("a", { href: url, download: file.name });
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      error.textContent = "";
    }).catch(function (e) { error.textContent = e.message; });
  }

  function poll() {
    api("GET", "/api/webchat/" + token + "/messages?after=" + lastId)
      .then(function (j) { j.messages.forEach(show); error.textContent = ""; })
      .catch(function (e) { error.textContent = e.message; });
  }
  function startPolling() {
    if (!pollTimer) { pollTimer = setInterval(poll, 4000); }
  }
  function connect() {
    poll();
    if (!("WebSocket" in window)) { startPolling(); return; }
    var wsBase = base.replace(/^http/, "ws");
    socket = new WebSocket(wsBase + "/ws/webchat/" + token + "/?session=" +
                           encodeURIComponent(state.session));
    socket.onmessage = function (ev) {
      var data = JSON.parse(ev.data);
      if (data.type === "message") { show(data.message); }
      if (data.type === "error") { error.textContent = data.message; }
    };
    socket.onopen = function () { if (pollTimer) { clearInterval(pollTimer); pollTimer = null; } };
    socket.onclose = function (ev) {
      socket = null;
      if (ev.code === 4401) { expired(); return; }
      startPolling();
    };
  }

  function send(text) {
    var cid = clientId();
    show({ client_id: cid, from: "visitor", text: text });
    if (socket && socket.readyState === 1) {
      socket.send(JSON.stringify({ text: text, client_id: cid }));
      return;
    }
    api("POST", "/api/webhooks/webchat/" + token, { text: text, client_id: cid })
      .catch(function (e) { error.textContent = e.message; });
  }

  function chatView() {
    var form = el("form", { "class": "swc-form" });
    var input = el("input", { type: "text", maxlength: "5000", "aria-label": "Message",
                              placeholder: "Type a message" });
    var picker = el("input", { type: "file", accept: UPLOAD_ACCEPT, hidden: "" });
    var attach = el("button", { type: "button", "class": "swc-attach", "aria-label": "Send a file",
                                title: "Send a picture, a PDF or a text file" }, "📎");
    attach.addEventListener("click", function () { picker.click(); });
    picker.addEventListener("change", function () {
      var file = picker.files && picker.files[0];
      if (file) { sendFile(file, input.value.trim()); input.value = ""; }
      picker.value = "";
    });
    form.appendChild(picker); form.appendChild(attach);
    form.appendChild(input); form.appendChild(el("button", { type: "submit" }, "Send"));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var text = input.value.trim();
      if (text) { send(text); input.value = ""; }
    });
    panel.appendChild(form);
    panel.appendChild(verifyView());
    connect();
  }

  function verifyView() {
    // Link the chat to your customer record: prove the address with a code sent there.
    var box = el("div", { "class": "swc-verify" });
    var ask = el("button", { type: "button" }, "Verify my email");
    var code = el("input", { type: "text", inputmode: "numeric", maxlength: "6",
                             "aria-label": "Code from the email", placeholder: "Code" });
    var check = el("button", { type: "button" }, "Confirm");
    code.hidden = true; check.hidden = true;
    box.appendChild(ask); box.appendChild(code); box.appendChild(check);
    ask.addEventListener("click", function () {
      api("POST", "/api/webchat/" + token + "/verify", {})
        .then(function (j) {
          error.textContent = "We sent a code to " + j.email + ".";
          code.hidden = false; check.hidden = false; code.focus();
        })
        .catch(function (e) { error.textContent = e.message; });
    });
    check.addEventListener("click", function () {
      api("POST", "/api/webchat/" + token + "/verify/confirm", { code: code.value.trim() })
        .then(function () {
          box.textContent = "Email verified.";
          error.textContent = "";
        })
        .catch(function (e) { error.textContent = e.message; });
    });
    return box;
  }

  function startView() {
    var form = el("form", { "class": "swc-start" });
    var name = el("input", { type: "text", required: "", placeholder: "Your name",
                             "aria-label": "Your name" });
    var email = el("input", { type: "email", required: "", placeholder: "Your email",
                              "aria-label": "Your email" });
    form.appendChild(name); form.appendChild(email);
    form.appendChild(el("button", { type: "submit" }, "Start chat"));
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      api("POST", "/api/webchat/" + token + "/session", { name: name.value, email: email.value })
        .then(function (j) {
          state = { session: j.session, visitor_id: j.visitor_id,
                    upload_max_bytes: j.upload_max_bytes }; save();
          panel.removeChild(form); chatView();
        })
        .catch(function (e) { error.textContent = e.message; });
    });
    panel.appendChild(form);
  }

  if (state && state.session) { chatView(); } else { startView(); }
})();
