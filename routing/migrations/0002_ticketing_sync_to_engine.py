"""The external ticketing sync moves to the delivery engine.

Every ``TicketingSync`` row (dead letters included) is carried into ``delivery_delivery``
with its attempts (numbers kept), then the old tables go. Open ones are sent by the
engine's sweep. Reversing recreates the old tables empty.
"""

from django.db import migrations

SYNCS = """
INSERT INTO delivery_delivery (
    target_kind, target_key, idempotency_key, subject_type, subject_id, payload, status,
    attempts, total_attempts, next_attempt_at, lease_owner, last_error, last_http_status,
    error_code, external_id, possible_duplicate, completed_at, created_at, updated_at
)
SELECT
    'ticketing_sync',
    COALESCE(substring(s.url from '^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]+)'), ''),
    'routing-decision-' || s.decision_id,
    'ticket',
    r.ticket_id::text,
    s.payload,
    s.status,
    s.attempts,
    COALESCE((SELECT max(a.number) FROM routing_ticketingsyncattempt a
              WHERE a.delivery_id = s.id), 0),
    CASE WHEN s.status IN ('pending', 'retrying') THEN s.next_attempt_at END,
    '',
    s.last_error,
    s.last_http_status,
    '',
    '',
    false,
    s.completed_at,
    s.created_at,
    s.updated_at
FROM routing_ticketingsync s
JOIN routing_routingdecision r ON r.id = s.decision_id
ON CONFLICT (target_kind, idempotency_key) DO NOTHING
"""

SYNC_ATTEMPTS = """
INSERT INTO delivery_attempt (
    delivery_id, number, outcome, http_status, duration_ms, error, error_code,
    request_summary, response_summary, lease_owner, created_at
)
SELECT d.id, a.number, a.outcome, a.http_status, a.duration_ms, a.error, '', '{}'::jsonb,
       '', '', a.created_at
FROM routing_ticketingsyncattempt a
JOIN routing_ticketingsync s ON s.id = a.delivery_id
JOIN delivery_delivery d
  ON d.target_kind = 'ticketing_sync' AND d.idempotency_key = 'routing-decision-' || s.decision_id
"""


class Migration(migrations.Migration):

    dependencies = [
        ('routing', '0001_initial'),
        ('delivery', '0001_engine'),
    ]

    operations = [
        migrations.RunSQL(SYNCS, migrations.RunSQL.noop),
        migrations.RunSQL(SYNC_ATTEMPTS, migrations.RunSQL.noop),
        migrations.RemoveField(
            model_name='ticketingsyncattempt',
            name='delivery',
        ),
        migrations.DeleteModel(
            name='TicketingSync',
        ),
        migrations.DeleteModel(
            name='TicketingSyncAttempt',
        ),
    ]
