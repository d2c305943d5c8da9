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
  const seen = new Set();
  let lastId = null;
  function addAlert(ev) {
    const empty = alerts.querySelector(".empty");
    if (empty) empty.remove();
    if (alerts.querySelector('[data-alert-id="' + ev.alert_id + '"]')) return;
    const li = document.createElement("li");
    li.className = "alert live";
    li.dataset.alertId = ev.alert_id;
    const when = document.createElement("time");
    const now = new Date();
    when.dateTime = now.toISOString();
    when.textContent = clock(now, false);
    li.append(when, " " + ev.message);  // the message says how long it was when raised
    alerts.prepend(li);
  }
  // Minutes in the current state, kept current (the page's figure is from its rendering).
  function tick() {
    agents.querySelectorAll(".since[data-since]").forEach((cell) => {
      const since = Date.parse(cell.dataset.since);
      if (isNaN(since)) return;
      const minutes = cell.parentElement.querySelector(".minutes");
      minutes.textContent = String(Math.max(0, Math.floor((Date.now() - since) / 60000)));
    });
  }
  function setState(ev) {
    const name = ev.username || ev.agent_arn;
    let row = Array.from(agents.querySelectorAll("tr")).find(r => r.dataset.agent === name);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.agent = name;
      row.innerHTML = '<td></td><td class="state"></td><td class="since"></td><td class="minutes">0</td>';
      row.firstChild.textContent = name;
      agents.appendChild(row);
    }
    row.querySelector(".state").textContent = words(ev.state);
    const since = row.querySelector(".since");
    since.dataset.since = ev.since;
    since.textContent = clock(new Date(ev.since), true);
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
    };
  }
  connect();
  setInterval(tick, 30000);
})();
