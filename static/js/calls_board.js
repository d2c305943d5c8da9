/* Agent-state board: alerts and agent states live over /ws/events/.
 * A static file (no inline script): the workbench's Content-Security-Policy forbids inline
 * scripts. */
(function () {
  const alerts = document.getElementById("alerts");
  const agents = document.getElementById("agents");
  const status = document.getElementById("ws-status");
  const zone = document.getElementById("board").dataset.timeZone;
  // Times in the site's zone and 24-hour, like the rendered ones (not the browser's zone:
  // a wall screen and the server would otherwise disagree by hours).
  function clock(date, seconds) {
    const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (seconds) options.second = "2-digit";
    try {
      return date.toLocaleTimeString("en-GB", Object.assign({ timeZone: zone }, options));
    } catch (e) {  // a zone name this browser does not know
      return date.toLocaleTimeString("en-GB", options);
    }
  }
  // A state as the page writes it (support.text.words): "AfterContactWork" → "After contact work".
  function words(code) {
    const text = String(code || "").replace(/([a-z0-9])(?=[A-Z])/g, "$1 ").replace(/_/g, " ").trim();
    return text.charAt(0).toUpperCase() + text.slice(1).toLowerCase();
  }
  // A length of time as the page writes it (support.text.readable_duration): "45 s",
  // "4 min 12 s", "1 h 03 min".
  function duration(seconds) {
    const total = Math.max(0, Math.floor(seconds));
    const two = (n) => String(n).padStart(2, "0");
    if (total < 60) return total + " s";
    if (total < 3600) return Math.floor(total / 60) + " min " + two(total % 60) + " s";
    return Math.floor(total / 3600) + " h " + two(Math.floor((total % 3600) / 60)) + " min";
  }
  // Per state, the shortest limit of the enabled "state lasts longer than" rules.
  let limits = {};
  try { limits = JSON.parse(document.getElementById("board").dataset.stateLimits || "{}"); }
  catch (e) { limits = {}; }
  const ackForm = document.getElementById("alert-acknowledge");
  const seen = new Set();
  let lastId = null;
  function addAlert(ev) {
    const empty = alerts.querySelector(".empty");
    if (empty) empty.remove();
    if (alerts.querySelector('[data-alert-id="' + ev.alert_id + '"]')) return;
    const li = document.createElement("li");
    li.className = "alert live";
    li.dataset.alertId = ev.alert_id;
    li.dataset.agent = ev.username || ev.agent_arn || "";
    li.dataset.since = ev.since || "";
    const when = document.createElement("time");
    const now = new Date();
    when.dateTime = now.toISOString();
    when.textContent = clock(now, false);
    const message = document.createElement("span");
    message.className = "message";
    message.textContent = ev.message;  // the message says how long it was when raised
    const badge = document.createElement("span");
    badge.className = "badge span-state";
    badge.textContent = "Still in that state";
    li.append(when, " ", message, " ", badge);
    if (ackForm) {
      const form = ackForm.content.firstElementChild.cloneNode(true);
      form.action = "/calls/board/alerts/" + encodeURIComponent(ev.alert_id) + "/acknowledge";
      li.append(" ", form);
    }
    alerts.prepend(li);
  }
  function dropAlert(ev) {
    const li = alerts.querySelector('[data-alert-id="' + ev.alert_id + '"]');
    if (li) li.remove();
    if (!alerts.querySelector("li")) {
      const empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "No open alerts.";
      alerts.append(empty);
    }
  }
  // An alert is over once its agent has left the state it is about (a new span started).
  function markEnded(agent, since) {
    alerts.querySelectorAll("li.alert").forEach((li) => {
      if (li.dataset.agent !== agent || li.dataset.since === since) return;
      if (Date.parse(li.dataset.since) >= Date.parse(since)) return;
      li.classList.add("ended");
      const badge = li.querySelector(".span-state");
      if (badge) badge.textContent = "Over: the agent has left that state";
    });
  }
  // Time in the current state, kept current (the page's figure is from its rendering),
  // and the mark of an agent past the state's limit.
  function tick() {
    agents.querySelectorAll(".since[data-since]").forEach((cell) => {
      const since = Date.parse(cell.dataset.since);
      if (isNaN(since)) return;
      const row = cell.parentElement;
      const seconds = Math.max(0, (Date.now() - since) / 1000);
      const cellTime = row.querySelector(".minutes");
      let shown = cellTime.querySelector(".duration");
      if (!shown) {
        shown = document.createElement("span");
        shown.className = "duration";
        cellTime.replaceChildren(shown);
      }
      shown.textContent = duration(seconds);
      const limit = row.dataset.limit === undefined ? NaN : Number(row.dataset.limit);
      const over = !isNaN(limit) && seconds > limit * 60;
      row.classList.toggle("over", over);
      let badge = cellTime.querySelector(".limit");
      if (over && !badge) {
        badge = document.createElement("span");
        badge.className = "badge limit";
        cellTime.append(" ", badge);
      }
      if (over) badge.textContent = "over the " + limit + " min limit";
      if (!over && badge) { badge.previousSibling && badge.previousSibling.remove(); badge.remove(); }
    });
  }
  function setState(ev) {
    const name = ev.username || ev.agent_arn;
    const empty = agents.querySelector("tr.empty");
    if (empty) empty.remove();
    let row = Array.from(agents.querySelectorAll("tr")).find(r => r.dataset.agent === name);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.agent = name;
      row.innerHTML = '<td></td><td class="state"><span class="badge"></span></td><td class="since"></td><td class="minutes"></td>';
      row.firstChild.textContent = name;
      agents.appendChild(row);
    }
    row.querySelector(".state .badge").textContent = words(ev.state);
    if (Object.prototype.hasOwnProperty.call(limits, ev.state)) row.dataset.limit = limits[ev.state];
    else delete row.dataset.limit;
    const since = row.querySelector(".since");
    since.dataset.since = ev.since;
    since.textContent = clock(new Date(ev.since), true);
    markEnded(name, ev.since);
    tick();
  }
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(proto + "://" + location.host + "/ws/events/" + (lastId ? "?since=" + lastId : ""));
    ws.onopen = () => { status.textContent = "Live"; status.dataset.state = "open"; };
    ws.onclose = () => { status.textContent = "Live: reconnecting…"; status.dataset.state = "closed"; setTimeout(connect, 2000); };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      const ev = data.event || {};
      if (ev.id) { if (seen.has(ev.id)) return; seen.add(ev.id); lastId = ev.id; }
      if (ev.event_type === "call.alert") addAlert(ev);
      if (ev.event_type === "call.agent_state") setState(ev);
      if (ev.event_type === "call.alert_acknowledged") dropAlert(ev);
    };
  }
  connect();
  setInterval(tick, 1000);
})();
