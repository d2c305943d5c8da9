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
 * A file that did not get through (the network, a timeout, a 5xx, a rate limit) shows
 * Retry: the same file with the same client id (a duplicate, never a second message).
 * A typed message shows "Sending…" until the server acknowledges its client id (an "ack"
 * frame, or the HTTP POST's 2xx). Without that answer (socket closed, no ack within
 * ACK_TIMEOUT_MS, an "unavailable" error frame, a 5xx or a network error) it is sent
 * again, over the socket if it is up, else over HTTP, at most MAX_TRIES times: the
 * client id makes a resend a duplicate on the server, never a second message. A late ack
 * does not close the socket: the message goes over HTTP, and the socket is asked for a
 * "pong"; only a socket that gives none within PONG_TIMEOUT_MS is closed and reopened.
 * A message the server refuses (too many messages, too long…) shows "Not sent" with the
 * reason and a Retry button. A closed socket is reopened after a growing pause (polling
 * meanwhile), and the visitor is told when the chat cannot reach the server.
 * Messages not acknowledged yet are kept in the browser's localStorage too (under the
 * chat's visitor: text, client id, time; at most UNSENT_MAX, none older than a day), so
 * a reload, a crashed tab or another page of the site shows them again as "Sending…" and
 * sends them again; a file being sent is not kept, only its name, to say it was not
 * sent. Without storage (private mode, quota, blocked) the widget works in the page alone.
 * Every request has a deadline (FETCH_TIMEOUT_MS; a file, FETCH_TIMEOUT_MS without
 * progress): a network that never answers (a captive portal, a stalled proxy) counts as a
 * network error, so the message is tried again and says so, never "Sending…" for ever.
 * When the session ends (401, close 4401) with messages not acknowledged, they are not
 * dropped at once: this page keeps them in its memory only (never in storage, so no other
 * tab, later visitor or browser restart sees them; a reload forgets them), shown as not
 * sent with their text (Discard), and offered in the next session of this page (Send
 * again / Discard) for CARRIED_MAX_AGE_MS after the end, the text left in the message box
 * too: the visitor decides, since the new session is a new chat, maybe someone else's.
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
  var state = readJson(storeKey, null);
  var lastId = 0, seen = {}, nodes = {}, socket = null, pollTimer = null;
  // The visitor's typed messages not acknowledged yet, by client id:
  // { text, node, tries, via: "socket" | "http" | null (waiting), timer, failed }.
  var pending = {};
  var ACK_TIMEOUT_MS = 10000, MAX_TRIES = 6;
  // An ack later than ACK_TIMEOUT_MS: the socket is asked for a pong (the server answers
  // once it has recorded what came before); none within this, it is dead.
  var PONG_TIMEOUT_MS = 20000, probeTimer = null;
  var reconnectTimer = null, reconnectDelay = 2000;
  // What localStorage keeps of the messages not acknowledged yet (unsentKeep).
  var UNSENT_MAX = 50, UNSENT_MAX_AGE_MS = 24 * 3600 * 1000;
  // Messages shown again from storage at load: until the first poll answers, the
  // conversation's earlier messages go above them, not under.
  var restored = [];
  var UNREACHABLE = "The chat cannot reach us right now; it keeps trying, and your " +
                    "messages will be sent when it is back.";
  // What POST /api/webchat/<token>/files accepts (the server checks again, and the bytes).
  var UPLOAD_ACCEPT = ".jpg,.jpeg,.png,.gif,.webp,.pdf,.txt";
  // The longest a request may go unanswered (headers and body); a file's upload, the
  // longest without progress, then UPLOAD_ANSWER_TIMEOUT_MS for the answer once sent.
  var FETCH_TIMEOUT_MS = 15000, UPLOAD_ANSWER_TIMEOUT_MS = 60000;
  // The messages of an ended session not acknowledged, offered in the next one of this
  // page: [{ client_id, text, file, ended (ms), node (shown) }], in page memory only, and
  // for CARRIED_MAX_AGE_MS after the end. (An earlier version kept them in localStorage
  // under LEGACY_CARRIED_SUFFIX for a day, shown to whoever opened the widget next on a
  // shared computer: removed at load.)
  var carried = [], carriedTimer = null, CARRIED_MAX_AGE_MS = 15 * 60 * 1000;
  var LEGACY_CARRIED_SUFFIX = ":carried";
  // Bumped when the session ends: an answer to a request of the old session is ignored.
  var epoch = 0;
  // What was typed in the message box when the session ended, put back in the next one
  // of this page until draftUntil (ms).
  var draft = "", draftUntil = 0;
  var polling = false, pollAgain = false;

  // The browser's storage may be missing or refuse (private mode, blocked cookies, quota):
  // every use goes through these, and the widget then keeps things in the page only.
  function storeGet(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }
  function storeSet(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { /* kept in the page only */ }
  }
  function storeRemove(key) {
    try { window.localStorage.removeItem(key); } catch (e) { /* nothing was kept */ }
  }
  function readJson(key, fallback) {
    try { return JSON.parse(storeGet(key) || "null") || fallback; } catch (e) { return fallback; }
  }
  function save() { storeSet(storeKey, JSON.stringify(state)); }

  // The visitor's messages not acknowledged yet, as storage keeps them for this chat:
  // [{ client_id, text, at (ms), file (a file's name, for a message with a file) }].
  function unsentKey() {
    return state && state.visitor_id ? storeKey + ":unsent:" + state.visitor_id : null;
  }
  function unsentRead() { return keptRead(unsentKey()); }
  function keptRead(key) {
    var now = Date.now(), list = key ? readJson(key, []) : [];
    if (!Array.isArray(list)) { list = []; }
    var kept = list.filter(function (m) {
      return m && typeof m.client_id === "string" && typeof m.text === "string" &&
        typeof m.at === "number" && Math.abs(now - m.at) < UNSENT_MAX_AGE_MS;
    }).slice(-UNSENT_MAX);
    // what is past its day (or malformed) is deleted, not only skipped: the visitor's words
    // do not stay on the device (a shared computer) after they stop mattering
    if (key && kept.length !== list.length) { keptWrite(key, kept); }
    return kept;
  }
  function unsentWrite(list) { keptWrite(unsentKey(), list); }
  function keptWrite(key, list) {
    if (!key) { return; }
    if (list.length) { storeSet(key, JSON.stringify(list.slice(-UNSENT_MAX))); }
    else { storeRemove(key); }
  }
  function unsentKeep(entry) {
    // read, change, write: another tab of the same chat keeps its own entries
    var list = unsentRead().filter(function (m) { return m.client_id !== entry.client_id; });
    list.push(entry);
    unsentWrite(list);
  }
  function unsentDrop(cid) {
    var list = unsentRead();
    var kept = list.filter(function (m) { return m.client_id !== cid; });
    if (kept.length !== list.length) { unsentWrite(kept); }
  }
  // The messages of ended sessions not acknowledged (carried), kept by this page until the
  // visitor sends or discards them, or CARRIED_MAX_AGE_MS after their session ended: then
  // forgotten, and taken off the screen (the start form or the chat), the draft with them.
  // Never in storage: on a shared computer the next person opens the widget in another
  // tab, or the same tab later, and must not read (or send as theirs) these words.
  function carriedList() {
    var now = Date.now();
    carried = carried.filter(function (m) {
      if (now - m.ended < CARRIED_MAX_AGE_MS) { return true; }
      if (m.node) { m.node.remove(); }
      return false;
    });
    if (draft && now >= draftUntil) { draft = ""; }
    clearTimeout(carriedTimer); carriedTimer = null;
    var next = carried.length ? carried[0].ended + CARRIED_MAX_AGE_MS : 0;
    if (draft && (!next || draftUntil < next)) { next = draftUntil; }
    // (a timer of a sleeping or background tab fires late, never early: each use checks too)
    if (next) { carriedTimer = setTimeout(carriedList, Math.max(next - now, 0) + 50); }
    return carried;
  }
  function carriedDrop(cid) {
    carried = carried.filter(function (m) {
      if (m.client_id !== cid) { return true; }
      if (m.node) { m.node.remove(); }
      return false;
    });
  }
  function carriedAdd(entries, box) {
    var have = {}, now = Date.now();
    carriedList().forEach(function (m) { have[m.client_id] = true; });
    entries.forEach(function (m) {
      if (have[m.client_id]) { return; }
      carried.push({ client_id: m.client_id, text: m.text, file: m.file, ended: now, node: null });
    });
    carried = carried.slice(-UNSENT_MAX);
    if (box) { draft = box; draftUntil = now + CARRIED_MAX_AGE_MS; }
    carriedList();  // the timer that forgets them
  }
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

  function timedFetch(url, options, read) {
    // fetch, and its body read ("json": null when it is not JSON; "blob": when 2xx),
    // within FETCH_TIMEOUT_MS: a request nobody answers (a captive portal, a stalled
    // proxy) is aborted and rejects as a network error does. Resolves { r, body }.
    var Abort = window.AbortController, controller = Abort ? new Abort() : null;
    if (controller) { options.signal = controller.signal; }
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () {
        if (controller) { controller.abort(); }
        reject(new Error("no answer in time"));
      }, FETCH_TIMEOUT_MS);
      fetch(url, options).then(function (r) {
        var body = read === "blob"
          ? (r.ok ? r.blob() : Promise.resolve(null))
          : r.json().catch(function () { return null; });
        return body.then(function (b) { clearTimeout(timer); resolve({ r: r, body: b }); });
      }).catch(function (e) { clearTimeout(timer); reject(e); });
    });
  }

  function api(method, path, data) {
    var headers = { "Content-Type": "application/json" };
    if (state && state.session) { headers["X-Webchat-Session"] = state.session; }
    var sent = state && state.session, at = epoch;
    return timedFetch(base + path, {
      method: method, headers: headers, body: data ? JSON.stringify(data) : undefined
    }, "json").then(function (res) {
      var r = res.r, j = res.body;
      // (once: a second 401 of the same ended session would wipe the new start form)
      if (r.status === 401 && sent && at === epoch) { expired(); }
      if (r.ok && j) { return j; }
      var reason = j && j.error && j.error.message;
      // a server error page (not our JSON) says nothing the visitor can use
      if (reason && r.status < 500) { throw new Error(reason); }
      throw unreachable(reason);
    }, function () {
      throw unreachable();  // the network, no answer in time, or an answer the browser hid
    });
  }
  function unreachable(reason) {
    var e = new Error(reason || "We cannot reach the chat right now; try again in a moment.");
    e.unreachable = true;
    return e;
  }

  function expired() {
    // The session is over (WEBCHAT_SESSION_TTL_SECONDS, or refused): forget it and start
    // again. What the visitor typed and the server did not acknowledge is not dropped at
    // once: this page keeps it for a while (carriedAdd, page memory only), shown as not
    // sent with its text, and offers it in the next session; what was in the message box
    // is put back there. Storage keeps nothing of it.
    epoch += 1;
    var left = unsentRead(), listed = {};
    left.forEach(function (m) { listed[m.client_id] = true; });
    Object.keys(pending).forEach(function (cid) {
      // the messages refused for good are on the page only: kept too, with their text
      if (!listed[cid]) { left.push({ client_id: cid, text: pending[cid].text, at: pending[cid].at }); }
    });
    var box = panel.querySelector(".swc-form input[type=text]");
    carriedAdd(left, box && box.value);
    var unsent = unsentKey();
    if (unsent) { storeRemove(unsent); }
    state = null; storeRemove(storeKey);
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; }
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    clearTimeout(probeTimer); probeTimer = null; restored = [];
    Object.keys(pending).forEach(function (cid) { clearTimeout(pending[cid].timer); });
    pending = {}; polling = false; pollAgain = false;
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
    if (msg.id && msg.client_id && msg.from === "visitor" && pending[msg.client_id]) {
      confirmed(msg.client_id);  // recorded (the poll shows it): its answer was lost
    }
    if (seen[key] || (msg.client_id && seen["c:" + msg.client_id] && msg.from === "visitor")) {
      if (msg.id) { seen[key] = true; lastId = Math.max(lastId, msg.id); }
      // a file this visitor sent, now recorded: its link replaces the "sending" note
      var sent = msg.client_id && nodes[msg.client_id];
      var early = sent ? restored.indexOf(sent) : -1;
      if (msg.id && early >= 0) {
        // shown from storage, recorded before the reload: into its place in the history
        restored.splice(early, 1);
        place(sent);
      }
      if (sent && msg.files && msg.files.length && !sent.linked) {
        sent.linked = true;
        // recorded after all (an upload given up on, then stored): no "not sent", no Retry,
        // and nothing left to say "not sent" about after a reload or in the next chat
        var stale = sent.querySelectorAll(".swc-note, .swc-retry");
        if (sent.querySelector(".swc-retry")) { error.textContent = ""; }
        Array.prototype.slice.call(stale).forEach(function (n) { n.remove(); });
        if (msg.id) { unsentDrop(msg.client_id); }
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
    if (msg.id) { place(node); } else { body.appendChild(node); }  // what the visitor types: last
    body.scrollTop = body.scrollHeight;
    return node;
  }
  function place(node) {
    // a message of the conversation: under the others, but above those shown from
    // storage until the first poll has answered
    if (restored.length) { body.insertBefore(node, restored[0]); } else { body.appendChild(node); }
  }

  function sendFile(file, text) {
    // One file (and the text typed, if any) as a message of the chat, with its progress.
    // False when it is not sent at all (too large): the text stays in the message box.
    var max = (state && state.upload_max_bytes) || 0;
    if (max && file.size > max) {
      error.textContent = "This file is too large (at most " + Math.floor(max / 1e6) + " MB).";
      return false;
    }
    var cid = clientId();
    var node = show({ client_id: cid, from: "visitor", text: text });
    // not the file (storage cannot hold it): its name, to say after a reload it was not sent
    unsentKeep({ client_id: cid, text: text || "", at: Date.now(), file: file.name });
    var note = el("span", { "class": "swc-note" }, file.name + ": sending…");
    node.appendChild(note);
    upload(file, text, cid, node, note);
    return true;
  }

  function upload(file, text, cid, node, note) {
    // Send the file; when it fails for a reason a new try may cure (the network, a
    // timeout, the server's 5xx, a rate limit) the message offers Retry, which sends the
    // same file with the same client id: a duplicate on the server if the first one was
    // recorded after all, never a second message.
    var old = node.querySelector(".swc-retry");
    if (old) { old.remove(); }
    note.textContent = file.name + ": sending…";
    var form = new FormData();
    form.append("file", file, file.name);
    form.append("client_id", cid);
    if (text) { form.append("text", text); }
    var xhr = new XMLHttpRequest(), at = epoch, stall = null;
    function offerRetry() {
      if (node.querySelector(".swc-retry")) { return; }
      var retry = el("button", { type: "button", "class": "swc-retry" }, "Retry");
      retry.addEventListener("click", function () {
        if (at !== epoch || !state) { return; }  // that chat has ended
        error.textContent = "";
        upload(file, text, cid, node, note);
      });
      node.appendChild(retry);
    }
    // No progress within FETCH_TIMEOUT_MS (or no answer within UPLOAD_ANSWER_TIMEOUT_MS once
    // the file is sent): given up as a network error, not "sending…" for ever.
    function watch(ms) {
      clearTimeout(stall);
      stall = setTimeout(function () { xhr.abort(); }, ms);
    }
    xhr.open("POST", base + "/api/webchat/" + token + "/files");
    xhr.setRequestHeader("X-Webchat-Session", state.session);
    xhr.upload.onload = function () { watch(UPLOAD_ANSWER_TIMEOUT_MS); };
    xhr.upload.onprogress = function (ev) {
      watch(FETCH_TIMEOUT_MS);
      if (ev.lengthComputable) {
        note.textContent = file.name + ": sending… " + Math.round(100 * ev.loaded / ev.total) + "%";
      }
    };
    xhr.onload = function () {
      clearTimeout(stall);
      if (at !== epoch) { return; }  // an answer for a session that has ended
      if (node.linked) { return; }  // a poll showed it recorded meanwhile: nothing to say
      var j = {};
      try { j = JSON.parse(xhr.responseText); } catch (e) { j = {}; }
      if (xhr.status === 401) { expired(); return; }
      // recorded, or refused for what it is (a 429 is "not now": kept, as a 5xx)
      if (xhr.status < 500 && xhr.status !== 429) { unsentDrop(cid); }
      if (xhr.status < 200 || xhr.status >= 300) {
        note.textContent = file.name + ": not sent";
        error.textContent = (j.error && j.error.message) || "The file could not be sent.";
        if (xhr.status >= 500 || xhr.status === 429) { offerRetry(); }
        return;
      }
      note.textContent = file.name + ": sent";
      error.textContent = "";
      // the link to download it again comes with the recorded message
      setTimeout(poll, 1500); setTimeout(poll, 6000);
    };
    xhr.onerror = xhr.onabort = function () {
      clearTimeout(stall);
      if (at !== epoch || node.linked) { return; }  // ended, or recorded after all
      note.textContent = file.name + ": not sent";
      error.textContent = "The file could not be sent; check your connection.";
      offerRetry();
    };
    watch(FETCH_TIMEOUT_MS);
    xhr.send(form);
  }

  function download(file) {
    if (!state) { return; }
    timedFetch(base + "/api/webchat/" + token + "/files/" + file.id, {
      headers: { "X-Webchat-Session": state.session }
    }, "blob").catch(function () {
      throw new Error("The file could not be downloaded; check your connection.");
    }).then(function (res) {
      if (!res.r.ok) { throw new Error("This file is not available any more."); }
      return res.body;
    }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      var a = el("a", { href: url, download: file.name });
      document.body.appendChild(a); a.click(); a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      error.textContent = "";
    }).catch(function (e) { error.textContent = e.message; });
  }

  function poll() {
    // One poll at a time (on a network that hangs they piled up, one every 4 s); one asked
    // for meanwhile runs when it ends, so nothing that arrived in between is missed.
    if (!state) { return; }
    if (polling) { pollAgain = true; return; }
    polling = true; pollAgain = false;
    var at = epoch;
    function done() {
      if (at !== epoch) { return false; }  // the session ended meanwhile: not its chat
      polling = false;
      if (pollAgain) { setTimeout(poll, 0); }
      return true;
    }
    api("GET", "/api/webchat/" + token + "/messages?after=" + lastId)
      .then(function (j) {
        if (!done()) { return; }
        j.messages.forEach(show); restored = []; error.textContent = "";
      })
      .catch(function (e) {
        if (!done()) { return; }
        restored = [];
        // polled again in a few seconds: say so, not a bare error (or nothing at all)
        error.textContent = e.unreachable ? UNREACHABLE : e.message;
      });
  }
  function startPolling() {
    if (!pollTimer) { pollTimer = setInterval(poll, 4000); }
  }
  function connect() {
    poll();
    if (!("WebSocket" in window)) { startPolling(); return; }
    openSocket();
  }
  function openSocket() {
    var wsBase = base.replace(/^http/, "ws");
    // The session goes in the handshake's subprotocol header, not the URL (URLs end up
    // in access logs); a subprotocol name may not hold ":", so the token's are "."
    var ws = new WebSocket(wsBase + "/ws/webchat/" + token + "/",
                           ["webchat", "session." + state.session.replace(/:/g, ".")]);
    socket = ws;
    ws.onmessage = function (ev) {
      if (socket === ws) { clearTimeout(probeTimer); probeTimer = null; }  // it works
      var data = JSON.parse(ev.data);
      if (data.type === "message") { show(data.message); }
      if (data.type === "ack" && data.client_id) { confirmed(data.client_id); }
      if (data.type === "error") {
        if (data.client_id && pending[data.client_id]) {
          refused(data.client_id, data.message, data.retry === true, data.code);
        } else if (!data.client_id) {
          error.textContent = data.message;
        }
      }
    };
    ws.onopen = function () {
      reconnectDelay = 2000;
      if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
      poll();  // what arrived while the socket was down
      // messages waiting for their next try go now, over the socket
      Object.keys(pending).forEach(function (cid) {
        var p = pending[cid];
        if (!p.via && !p.failed) { transmit(cid, false); }
      });
    };
    ws.onclose = function (ev) { lost(ws, ev.code); };
  }
  function lost(ws, code) {
    if (socket !== ws) { return; }
    socket = null;
    clearTimeout(probeTimer); probeTimer = null;
    if (code === 4401) { expired(); return; }
    startPolling();
    if (code !== 4403) { reopenLater(); }
    // what was sent into the socket and not acknowledged goes again, over HTTP
    Object.keys(pending).forEach(function (cid) {
      if (pending[cid].via === "socket") { transmit(cid, true); }
    });
  }
  function probe() {
    // Is the socket alive? A ping; any frame back says yes. None within PONG_TIMEOUT_MS:
    // half dead (the network gone, nobody told), closed here and reopened.
    var ws = socket;
    if (!ws || ws.readyState !== 1 || probeTimer) { return; }
    try { ws.send(JSON.stringify({ type: "ping" })); } catch (e) { return; }  // closing
    probeTimer = setTimeout(function () {
      probeTimer = null;
      if (socket !== ws) { return; }
      ws.onclose = null;
      try { ws.close(); } catch (e) { /* already closing */ }
      lost(ws, 1006);
    }, PONG_TIMEOUT_MS);
  }
  function reopenLater() {
    if (reconnectTimer || !state) { return; }
    reconnectTimer = setTimeout(function () {
      reconnectTimer = null;
      if (state && !socket) { openSocket(); }
    }, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 60000);
  }

  function status(cid, text, failed) {
    // The message's state under its text ("Sending…", "Not sent: …" and Retry, or none
    // once acknowledged); inside the aria-live body, so a change is read out.
    var p = pending[cid], node = p && p.node;
    if (!node) { return; }
    Array.prototype.slice.call(node.querySelectorAll(".swc-status, .swc-retry"))
      .forEach(function (n) { n.remove(); });
    node.classList.toggle("swc-sending", !!text && !failed);
    node.classList.toggle("swc-failed", !!failed);
    if (!text) { return; }
    node.appendChild(el("span", { "class": "swc-status" }, text));
    if (failed) {
      var retry = el("button", { type: "button", "class": "swc-retry" }, "Retry");
      retry.addEventListener("click", function () {
        if (!pending[cid]) { return; }
        unsentKeep({ client_id: cid, text: pending[cid].text, at: Date.now() });
        pending[cid].failed = false; pending[cid].tries = 0;
        status(cid, "Sending…", false);
        transmit(cid, false);
      });
      node.appendChild(retry);
    }
  }
  function confirmed(cid) {
    var p = pending[cid];
    if (!p) { return; }
    unsentDrop(cid);
    clearTimeout(p.timer);
    status(cid, "", false);
    delete pending[cid];
  }
  function failed(cid, reason, refusedForGood) {
    var p = pending[cid];
    clearTimeout(p.timer);
    p.via = null; p.failed = true;
    // A message the server refused (too long, malformed) is not resent at the next load:
    // it stays on the page with Retry. One that got no answer is kept and resent.
    if (refusedForGood) { unsentDrop(cid); }
    status(cid, "Not sent: " + reason, true);
  }
  function later(cid, unanswered) {
    // no answer, or "try again": the next try after a growing pause (or when the socket
    // opens), within MAX_TRIES
    var p = pending[cid];
    clearTimeout(p.timer);
    p.via = null;
    if (p.tries >= MAX_TRIES) {
      failed(cid, "no answer from the server; check your connection.");
      return;
    }
    // the network failed or never answered: said, not a plain "Sending…" meanwhile
    if (unanswered) { status(cid, "Not sent yet: no answer from the server; trying again…", false); }
    p.timer = setTimeout(function () { transmit(cid, false); },
                         Math.min(1000 * Math.pow(2, p.tries), 30000));
  }
  function refused(cid, reason, retry, code) {
    if (retry) { later(cid); return; }
    // a rate limit passes: such a message is kept for the next load too
    failed(cid, reason || "the message was refused.", code !== "rate_limited");
  }
  function transmit(cid, overHttp) {
    var p = pending[cid];
    if (!p || p.failed) { return; }
    clearTimeout(p.timer);
    p.tries += 1;
    var data = { text: p.text, client_id: cid };
    if (!overHttp && socket && socket.readyState === 1) {
      try {
        socket.send(JSON.stringify(data));
        p.via = "socket";
        p.timer = setTimeout(function () {
          // No ack: the server may be slow, or the socket half dead. This message goes
          // over HTTP (a duplicate if it was recorded: the server answers 200 either way),
          // and the socket is asked for a pong; it is kept if it answers (closing it at
          // once made every slow ack cost a reconnect).
          probe();
          transmit(cid, true);
        }, ACK_TIMEOUT_MS * Math.min(Math.pow(2, p.tries - 1), 6));
        return;
      } catch (e) { /* a socket closing under us: HTTP below */ }
    }
    p.via = "http";
    var headers = { "Content-Type": "application/json", "X-Webchat-Session": state.session };
    var at = epoch;
    timedFetch(base + "/api/webhooks/webchat/" + token, {
      method: "POST", headers: headers, body: JSON.stringify(data)
    }, "json").then(function (res) {
      var r = res.r, j = res.body || {};
      if (at !== epoch) {
        // the session ended while this was on its way: recorded after all, it is not
        // offered again in the next one
        if (r.ok) { carriedDrop(cid); }
        return;
      }
      if (r.ok) { confirmed(cid); return; }
      if (!pending[cid] || pending[cid].via !== "http") { return; }
      if (r.status === 401 && state && state.session) { expired(); return; }
      if (r.status >= 500 || r.status === 408) { later(cid); return; }
      failed(cid, (j.error && j.error.message) || "the message was refused.", r.status !== 429);
    }, function () {
      // the network, or no answer within FETCH_TIMEOUT_MS: tried again
      if (at === epoch && pending[cid] && pending[cid].via === "http") { later(cid, true); }
    });
  }

  function send(text) {
    var cid = clientId(), at = Date.now();
    unsentKeep({ client_id: cid, text: text, at: at });
    sendAgain(cid, text, at);
  }
  function sendAgain(cid, text, at) {
    var node = show({ client_id: cid, from: "visitor", text: text });
    pending[cid] = { text: text, node: node, tries: 0, via: null, timer: null, failed: false,
                     at: at };
    status(cid, "Sending…", false);
    transmit(cid, false);
  }
  function restoreUnsent() {
    // What the last page of this chat sent and had no answer for: shown again, and sent
    // again with its client id (a duplicate, never a second message, if it was recorded).
    unsentRead().forEach(function (m) {
      if (seen["c:" + m.client_id]) { return; }
      if (typeof m.file !== "string") {
        sendAgain(m.client_id, m.text, m.at);
        restored.push(nodes[m.client_id]);
        return;
      }
      // a file: the browser kept no copy to send; said once (its link replaces this if
      // the upload was recorded after all)
      var node = show({ client_id: m.client_id, from: "visitor", text: m.text });
      node.appendChild(el("span", { "class": "swc-note" },
                          m.file + ": not sent; please attach it again."));
      restored.push(node);
      unsentDrop(m.client_id);
    });
  }

  function showCarried(inChat) {
    // The messages an ended session left unsent: their text, "not sent", and in a chat
    // the visitor's choice, Send again (a new message of this chat) or Discard; on the
    // start form, Discard. Not sent by themselves: this chat is a new one, maybe another
    // person's at a shared computer, and one whose ack was lost may have reached the old
    // chat already.
    carriedList().forEach(function (m) {
      var node = el("div", { "class": "swc-msg swc-visitor swc-failed swc-carried" }, m.text);
      if (typeof m.file === "string") {
        node.appendChild(el("span", { "class": "swc-note" },
                            m.file + ": not sent; please attach it again."));
      }
      node.appendChild(el("span", { "class": "swc-status" },
        "Not sent: your chat session ended before it reached us." +
        (inChat ? "" : " Start the chat again to send it.")));
      if (inChat && m.text) {
        var again = el("button", { type: "button", "class": "swc-retry" }, "Send again");
        again.addEventListener("click", function () {
          // sent once, whatever the clicks; not at all once discarded or forgotten
          if (!node.parentNode) { return; }
          carriedDrop(m.client_id); node.remove(); send(m.text);
        });
        node.appendChild(again);
      }
      var drop = el("button", { type: "button", "class": "swc-retry" }, "Discard");
      drop.addEventListener("click", function () { carriedDrop(m.client_id); node.remove(); });
      node.appendChild(drop);
      m.node = node;
      body.appendChild(node);
    });
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
      // (the text typed was cleared even when the file was refused here: lost)
      if (file && sendFile(file, input.value.trim())) { input.value = ""; }
      picker.value = "";
    });
    form.appendChild(picker); form.appendChild(attach);
    form.appendChild(input); form.appendChild(el("button", { type: "submit" }, "Send"));
    carriedList();  // a draft older than CARRIED_MAX_AGE_MS is forgotten, not put back
    input.value = draft; draft = "";
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var text = input.value.trim();
      if (text) { send(text); input.value = ""; }
    });
    panel.appendChild(form);
    panel.appendChild(verifyView());
    showCarried(true);
    restoreUnsent();
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
    var start = el("button", { type: "submit" }, "Start chat"), starting = false;
    form.appendChild(start);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      // One session per start: a double click (or Enter twice) started two, the socket
      // under the first and the sends and polls under the second, two visitors' chats.
      if (starting) { return; }
      starting = true; start.disabled = true;
      api("POST", "/api/webchat/" + token + "/session", { name: name.value, email: email.value })
        .then(function (j) {
          state = { session: j.session, visitor_id: j.visitor_id,
                    upload_max_bytes: j.upload_max_bytes }; save();
          body.textContent = "";  // what showCarried put there: shown again, with its choices
          panel.removeChild(form); chatView();
        })
        .catch(function (e) {
          starting = false; start.disabled = false;
          error.textContent = e.message;
        });
    });
    panel.appendChild(form);
    showCarried(false);
  }

  // What an earlier version of this widget kept after a session ended, for a day, in
  // localStorage (shown to whoever opened the widget next): deleted, never shown.
  storeRemove(storeKey + LEGACY_CARRIED_SUFFIX);
  if (state && state.session) { chatView(); } else { startView(); }
})();
