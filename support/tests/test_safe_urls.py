"""Only plain http(s) URLs from data become links (support.safe_urls)."""

from __future__ import annotations

import pytest
from django.template import Context, Template

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
