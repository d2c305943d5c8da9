"""routing/static/routing/panel.js run under Node against a small DOM double: a
double-click sends one request, the button is disabled while it runs, and a failure
enables it again (review: "routing verdicts are not ordered or deduplicated"; before,
each submit sent a request and nothing was disabled). Skipped where Node is not
installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

PANEL_JS = Path(__file__).resolve().parents[1] / "static" / "routing" / "panel.js"

#: The DOM the script touches (one verdict form), a fetch that answers when told, and
#: the steps: a double-click, a lost connection, a new submit, a success.
HARNESS = """
var calls = [], pending = [], reloaded = 0, handler = null;
var button = {disabled: false};
var box = {hidden: true, textContent: ""};
var form = {
  dataset: {}, action: "/api/tickets/1/routing/accept",
  _entries: [["csrfmiddlewaretoken", "t"], ["decision_id", "7"]],
  addEventListener: function (name, fn) { if (name === "submit") handler = fn; },
  querySelectorAll: function () { return [button]; },
  closest: function () { return {querySelector: function () { return box; }}; },
};
globalThis.document = {querySelectorAll: function () { return [form]; }};
globalThis.window = {location: {reload: function () { reloaded++; }}};
globalThis.FormData = function (f) { return f._entries; };
globalThis.fetch = function (url, opts) {
  calls.push(JSON.parse(opts.body));
  return new Promise(function (resolve, reject) {
    pending.push({resolve: resolve, reject: reject});
  });
};
function submit() { handler({preventDefault: function () {}}); }
function settle() { return new Promise(function (r) { setTimeout(r, 0); }); }
async function main() {
  var out = {};
  submit(); submit();
  out.double_click = {fetches: calls.length, disabled: button.disabled};
  pending[0].reject(new Error("offline"));
  await settle();
  out.failed = {disabled: button.disabled, error_shown: !box.hidden};
  submit();
  out.again = {fetches: calls.length, disabled: button.disabled};
  pending[1].resolve({ok: true, status: 200});
  await settle();
  out.saved = {reloaded: reloaded, disabled: button.disabled};
  out.body = calls[0];
  console.log(JSON.stringify(out));
}
"""


def test_the_panel_sends_one_verdict_per_click_until_it_is_answered():
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node is not installed")
    script = HARNESS + PANEL_JS.read_text() + "\nmain();\n"
    run = subprocess.run(
        [node, "-"], input=script, capture_output=True, text=True, timeout=30, check=True
    )
    assert json.loads(run.stdout) == {
        "double_click": {"fetches": 1, "disabled": True},
        "failed": {"disabled": False, "error_shown": True},
        "again": {"fetches": 2, "disabled": True},
        "saved": {"reloaded": 1, "disabled": True},
        "body": {"decision_id": 7},
    }
