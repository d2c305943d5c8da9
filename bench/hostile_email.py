# mypy: ignore-errors
"""What a hostile e-mail costs to read: seconds for ``html_to_text`` on HTML nested N deep,
and for the adapter's read of a raw MIME message with N nested multipart sections or N
attachments (``EmailAdapter.parse``, what the drain runs per delivery, twice in a batch).

    ENVIRONMENT=test .venv/bin/python bench/hostile_email.py [--depths 2500 5000 10000 20000]

No database or network.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")

import django  # noqa: E402

django.setup()

from channels_app.adapters.base import WebhookRequest  # noqa: E402
from channels_app.adapters.email.adapter import EmailAdapter  # noqa: E402
from channels_app.adapters.email.parsing import html_to_text, parse_form_data  # noqa: E402


def _timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def _raw_email_request(raw: str) -> WebhookRequest:
    boundary = "xYzZY"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="email"\r\n\r\n{raw}\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    return WebhookRequest(
        headers={"content-type": f"multipart/form-data; boundary={boundary}"}, body=body
    )


def nested_mime(depth: int) -> str:
    head = "From: Eve <eve@attacker.test>\r\nSubject: s\r\nMessage-ID: <b@attacker.test>\r\n"
    head += 'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
    body = "".join(
        f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n'
        for i in range(depth)
    )
    body += f"--b{depth}\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    return head + body + "".join(f"--b{i}--\r\n" for i in reversed(range(depth + 1)))


def many_attachments(count: int) -> str:
    head = "From: Eve <eve@attacker.test>\r\nSubject: s\r\nMessage-ID: <a@attacker.test>\r\n"
    head += 'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
    parts = "--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n" + "".join(
        "--B\r\nContent-Type: application/octet-stream\r\n"
        f'Content-Disposition: attachment; filename="f{i}.bin"\r\n\r\nx\r\n'
        for i in range(count)
    )
    return head + parts + "--B--\r\n"


def form_with_files(count: int) -> tuple[str, bytes]:
    boundary = "xYzZY"
    body = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="attachment{i}"; '
        f'filename="f{i}.bin"\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n'
        for i in range(count)
    )
    return f"multipart/form-data; boundary={boundary}", (body + f"--{boundary}--\r\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depths", type=int, nargs="+", default=[2500, 5000, 10000, 20000])
    args = parser.parse_args()
    adapter = EmailAdapter()
    print("html_to_text, <div> nested N deep")
    for depth in args.depths:
        html = "<div>" * depth + "x" + "</div>" * depth
        print(f"  N={depth:>6}  {len(html):>8} chars  {_timed(html_to_text, html):7.2f} s")
    print("parse_form_data, N one-byte file parts (SendGrid's parsed mode)")
    for count in (6000, 24000):
        ctype, body = form_with_files(count)
        print(
            f"  N={count:>6}  {len(body):>8} bytes  {_timed(parse_form_data, ctype, body):7.2f} s"
        )
    print("EmailAdapter.parse, raw MIME")
    for label, raw in (
        ("1,200 nested multipart", nested_mime(1200)),
        ("3,000 attachments", many_attachments(3000)),
        ("24,000 attachments", many_attachments(24000)),
    ):
        request = _raw_email_request(raw)
        try:
            seconds = _timed(adapter.parse, None, request)
            outcome = "read"
        except RecursionError:
            seconds, outcome = float("nan"), "RecursionError"
        print(f"  {label:<24} {len(raw):>8} bytes  {seconds:7.2f} s  {outcome}")


if __name__ == "__main__":
    main()
