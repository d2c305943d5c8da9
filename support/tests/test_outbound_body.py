"""An answer's body is read bounded (support.outbound.body_read_bounded): no more than the
caller takes, and no longer than its deadline however slowly the bytes trickle (requests'
timeout bounds each wait between bytes, not the whole read). Real HTTP on localhost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from support.outbound import AnswerTooLarge, AnswerTooSlow, body_read_bounded


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        try:
            if self.path == "/trickle":  # a byte every 50 ms, 200 of them (10 s)
                self.send_header("Content-Length", "200")
                self.end_headers()
                for _ in range(200):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            elif self.path == "/declared-large":
                self.send_header("Content-Length", str(10 * 1024 * 1024))
                self.end_headers()
                self.wfile.write(b"x" * 1024)
            elif self.path == "/chunked-large":  # no length said: 4 MiB in chunks
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for _ in range(64):
                    self.wfile.write(b"10000\r\n" + b"x" * 65536 + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            else:
                body = b'{"ok": true}'
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader gave up: what the test wants


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _get(url: str) -> requests.Response:
    return requests.get(url, stream=True, timeout=2)


def test_a_small_answer_is_read_whole(server: str) -> None:
    assert body_read_bounded(_get(f"{server}/ok"), max_bytes=100, seconds=5) == b'{"ok": true}'


def test_a_trickle_within_each_wait_is_stopped_at_the_deadline(server: str) -> None:
    """Each byte comes within the 2 s read timeout, so requests alone waits 10 s."""
    with pytest.raises(AnswerTooSlow):
        body_read_bounded(_get(f"{server}/trickle"), max_bytes=1000, seconds=0.3)


def test_a_larger_answer_is_refused_unread_or_at_the_cap(server: str) -> None:
    with pytest.raises(AnswerTooLarge, match="10485760 bytes"):
        body_read_bounded(_get(f"{server}/declared-large"), max_bytes=64 * 1024, seconds=5)
    with pytest.raises(AnswerTooLarge, match="over 65536 bytes"):
        body_read_bounded(_get(f"{server}/chunked-large"), max_bytes=64 * 1024, seconds=5)


def test_both_are_failed_calls_to_a_handler_of_requests_errors() -> None:
    assert issubclass(AnswerTooLarge, requests.RequestException)
    assert issubclass(AnswerTooSlow, requests.Timeout)
