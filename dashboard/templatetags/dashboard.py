from __future__ import annotations

from typing import Any

from django import template

from dashboard.charts import format_value

register = template.Library()


@register.simple_tag
def figure(value: Any, unit: str = "") -> str:
    """A figure with its unit ("—" when there is no data); escaped by the template."""
    return format_value(value, unit)
