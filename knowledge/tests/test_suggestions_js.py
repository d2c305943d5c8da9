"""knowledge/static/knowledge/suggestions.js run under Node against a small DOM double:
"Helpful" then "Not helpful" leaves only the second marked (both stayed marked), and a
refused or unsent feedback is said under the suggestion. Skipped where Node is not
installed (the pattern of routing/tests/test_panel_js.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SUGGESTIONS_JS = Path(__file__).resolve().parents[1] / "static" / "knowledge" / "suggestions.js"

HARNESS = """
function el(attrs) {
  var e = {
    dataset: attrs.dataset || {}, attrs: {}, classes: new Set(), children: [], hidden: false,
    textContent: "",
    classList: {
      add: function (c) { e.classes.add(c); }, remove: function (c) { e.classes.delete(c); },
    },
    setAttribute: function (k, v) { e.attrs[k] = v; },
    appendChild: function (c) { e.children.push(c); },
    querySelector: function (sel) {
      return sel === ".kb-feedback-error" ? (e.children.filter(function (c) {
        return c.className && c.className.indexOf("kb-feedback-error") !== -1;
      })[0] || null) : null;
    },
    querySelectorAll: function () { return e.buttons || []; },
    closest: function (sel) { return e.closestMap ? e.closestMap[sel] || null : null; },
  };
  return e;
}
var item = el({});
var helpful = el({dataset: {feedbackUrl: "/fb", helpful: "true"}});
var unhelpful = el({dataset: {feedbackUrl: "/fb", helpful: "false"}});
item.buttons = [helpful, unhelpful];
[helpful, unhelpful].forEach(function (b) {
  b.closestMap = {"[data-feedback-url]": b, ".kb-suggestion": item, "[data-insert-text]": null};
});
var handler = null;
var panel = el({});
panel.addEventListener = function (name, fn) { handler = fn; };
globalThis.document = {
  cookie: "", querySelectorAll: function () { return [panel]; },
  createElement: function () { return el({}); },
};
var answers = [];
globalThis.fetch = function () { return answers.shift(); };
function click(b) { handler({target: b}); }
function settle() { return new Promise(function (r) { setTimeout(r, 0); }); }
function marks() {
  return [helpful, unhelpful].map(function (b) {
    return [b.classes.has("kb-feedback-sent"), b.attrs["aria-pressed"] || null];
  });
}
function error() {
  var box = item.querySelector(".kb-feedback-error");
  return box && !box.hidden ? box.textContent : "";
}
async function main() {
  var out = {};
  answers.push(Promise.resolve({ok: true, status: 201}));
  click(helpful); await settle();
  out.helpful = marks();
  answers.push(Promise.resolve({ok: true, status: 201}));
  click(unhelpful); await settle();
  out.then_not_helpful = marks();
  answers.push(Promise.resolve({ok: false, status: 500}));
  click(helpful); await settle();
  out.refused = {marks: marks(), error: error()};
  answers.push(Promise.reject(new Error("offline")));
  click(helpful); await settle();
  out.offline = error();
  answers.push(Promise.resolve({ok: true, status: 201}));
  click(helpful); await settle();
  out.saved = {marks: marks(), error: error()};
  console.log(JSON.stringify(out));
}
"""


def test_only_the_latest_feedback_is_marked_and_failures_are_said():
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node is not installed")
    script = HARNESS + SUGGESTIONS_JS.read_text() + "\nmain();\n"
    run = subprocess.run(
        [node, "-"], input=script, capture_output=True, text=True, timeout=30, check=True
    )
    out = json.loads(run.stdout)
    assert out["helpful"] == [[True, "true"], [False, "false"]]
    assert out["then_not_helpful"] == [[False, "false"], [True, "true"]]
    assert out["refused"]["marks"] == out["then_not_helpful"]  # a refusal changes no mark
    assert "server answered 500" in out["refused"]["error"]
    assert "Could not reach the server" in out["offline"]
    assert out["saved"] == {"marks": [[True, "true"], [False, "false"]], "error": ""}
