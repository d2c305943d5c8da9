/* Agent-state board: alerts and agent states live over /ws/events/.
 * A static file (no inline script): the workbench's Content-Security-Policy forbids inline
 * scripts. */
(function () {
  const alerts = document.getElementById("alerts");
  const agents = document.getElementById("agents");
  const status = document.getElementById("ws-status");
  const seen = new Set();
  let lastId = null;
  function addAlert(ev) {
    const empty = alerts.querySelector(".empty");
    if (empty) empty.remove();
    if (alerts.querySelector('[data-alert-id="' + ev.alert_id + '"]')) return;
    const li = document.createElement("li");
    li.className = "alert live";
    li.dataset.alertId = ev.alert_id;
    li.textContent = ev.message;
    alerts.prepend(li);
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
    row.querySelector(".state").textContent = ev.state;
    row.querySelector(".since").textContent = new Date(ev.since).toLocaleTimeString();
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
})();
