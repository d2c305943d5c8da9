"""Only plain http(s) URLs from data become links (support.safe_urls)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.template import Context, Template

from support import safe_urls
from support.safe_urls import http_url, is_http_url


@pytest.mark.parametrize(
    "url",
    [
        "https://help.example.com/refunds?x=1#y",
        "http://example.com",
        "HTTPS://EXAMPLE.COM/path",
        "https://[2001:db8::1]/x",
    ],
)
def test_http_urls_are_kept(url):
    assert is_http_url(url)
    assert http_url(f"  {url} ") == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "\x01javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/x",
        "/relative/path",
        "https:alert(1)",
        "https://",
        "https://exa mple.com/",
        "https://[::1/x",
        "s3://bucket/key",
        "mailto:a@example.com",
        "",
        None,
        42,
        "https://example.com/" + "a" * 3000,
    ],
)
def test_everything_else_is_refused(url):
    assert not is_http_url(url)
    assert http_url(url) == ""


def test_template_filter_renders_an_unsafe_url_as_text():
    template = Template(
        "{% load safe_urls %}{% with href=url|http_url %}"
        '{% if href %}<a href="{{ href }}">{{ title }}</a>{% else %}{{ title }}{% endif %}'
        "{% endwith %}"
    )
    bad = template.render(Context({"url": "javascript:alert(1)", "title": "<b>Doc</b>"}))
    assert bad == "&lt;b&gt;Doc&lt;/b&gt;"
    good = template.render(Context({"url": 'https://x.test/?a="1"', "title": "Doc"}))
    assert good == '<a href="https://x.test/?a=&quot;1&quot;">Doc</a>'


# --- public_post: the address connected to is checked, not only the one resolved first ----


class _Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def loopback_server() -> Iterator[int]:
    _Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """``rebind.example`` resolves to a public address for the check and to loopback when
    the connection is made: a DNS rebinding attack with a time-to-live of zero."""
    monkeypatch.setattr(safe_urls, "_resolve", lambda host, port: ["93.184.216.34"])
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example":
            host = "127.0.0.1"
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.usefixtures("rebinding_dns")
def test_a_name_rebound_to_loopback_after_the_check_is_refused_before_sending(
    loopback_server: int,
) -> None:
    with pytest.raises(safe_urls.UnsafeUrlError, match="internal address when connecting"):
        safe_urls.public_post(
            f"http://rebind.example:{loopback_server}/hook", allow_http=True, data=b"{}", timeout=5
        )
    assert _Recorder.hits == []


@pytest.mark.usefixtures("rebinding_dns")
def test_private_networks_allowed_by_setting_are_reached(loopback_server: int) -> None:
    response = safe_urls.public_post(
        f"http://rebind.example:{loopback_server}/hook",
        allow_http=True,
        allow_private=True,
        data=b"{}",
        timeout=5,
    )
    assert response.status_code == 204
    assert _Recorder.hits == ["/hook"]


def test_an_internal_address_is_refused_before_any_connection(loopback_server: int) -> None:
    with pytest.raises(safe_urls.UnsafeUrlError, match="internal address"):
        safe_urls.public_post(
            f"http://127.0.0.1:{loopback_server}/hook", allow_http=True, data=b"{}", timeout=5
        )
    assert _Recorder.hits == []


class _FakeSocket:
    def __init__(self, address: str) -> None:
        self.address = address
        self.closed = False

    def getpeername(self) -> tuple[str, int]:
        return (self.address, 443)

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("93.184.216.34", False),
        ("2606:2800:220:1:248:1893:25c8:1946", False),
        ("10.0.0.5", True),
        ("169.254.169.254", True),
        ("::ffff:127.0.0.1", True),
        ("fe80::1%eth0", True),
    ],
)
def test_the_peer_check(address: str, refused: bool) -> None:
    sock = _FakeSocket(address)
    if refused:
        with pytest.raises(OSError, match="internal address"):
            safe_urls._peer_check(sock)  # type: ignore[arg-type]
    else:
        safe_urls._peer_check(sock)  # type: ignore[arg-type]
    assert sock.closed is refused
