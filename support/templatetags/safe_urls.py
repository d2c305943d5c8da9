"""``{{ url|http_url }}``: the URL when it is a plain http(s) URL, else an empty string.

Every template that puts a URL from data into ``href`` or ``src`` goes through this filter
(see ``support.safe_urls``); wrap the link in ``{% if url|http_url %}`` so an unsafe one is
shown as text.
"""

from __future__ import annotations

from django import template

from support import safe_urls

register = template.Library()


@register.filter(name="http_url")
def http_url(value: object) -> str:
    return safe_urls.http_url(value)
