"""Web chat replies name their visitor in their channel id (``<visitor>:out-<message id>``,
was ``webchat-out-<message id>``): a widget shows only the messages its visitor's prefix
names (``selectors.webchat_messages``). Replies already sent get the visitor of their
ticket, except on tickets another ticket was merged into (which visitor a reply there
went to is not known: those stay with the agents and drop out of the widget)."""

from django.db import migrations

FORWARD = r"""
UPDATE tickets_message m
SET channel_message_id = t.origin_platform_id || ':out-' || m.id
FROM tickets_ticket t
WHERE m.ticket_id = t.id
  AND m.channel = 'webchat'
  AND m.direction = 'outbound'
  AND m.channel_message_id = 'webchat-out-' || m.id
  AND t.origin_platform_id LIKE 'v\_%'
  AND NOT EXISTS (SELECT 1 FROM tickets_ticket s WHERE s.merged_into_id = t.id)
"""

BACKWARD = r"""
UPDATE tickets_message m
SET channel_message_id = 'webchat-out-' || m.id
WHERE m.channel = 'webchat'
  AND m.direction = 'outbound'
  AND m.channel_message_id LIKE '%:out-' || m.id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0007_deliveries_to_engine"),
        ("tickets", "0005_sla_policies"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
