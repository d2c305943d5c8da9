"""Salesforce deliveries move to the delivery engine.

Every ``SalesforceDelivery`` row (dead letters included) is carried into
``delivery_delivery`` with its attempts, then the old tables go. Open ones, including those
whose first enqueue was lost (``next_attempt_at`` empty, which the old sweep never saw), are
sent by the engine's sweep, now as upserts by External ID. Reversing recreates the old
tables empty.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.db import migrations

RECORDS = """
INSERT INTO delivery_delivery (
    target_kind, target_key, idempotency_key, subject_type, subject_id, payload, status,
    attempts, total_attempts, next_attempt_at, lease_owner, last_error, last_http_status,
    error_code, external_id, possible_duplicate, completed_at, created_at, updated_at
)
SELECT
    'salesforce',
    %s,
    s.key,
    'call',
    s.call_id::text,
    jsonb_build_object('sobject', s.sobject, 'fields', s.payload, 'call_id', s.call_id,
                       'escalation_id', s.escalation_id),
    s.status,
    s.attempts,
    (SELECT count(*) FROM calls_salesforceattempt a WHERE a.delivery_id = s.id),
    CASE WHEN s.status IN ('pending', 'retrying') THEN s.next_attempt_at END,
    '',
    s.last_error,
    s.last_http_status,
    '',
    s.salesforce_id,
    false,
    s.completed_at,
    s.created_at,
    s.updated_at
FROM calls_salesforcedelivery s
ON CONFLICT (target_kind, idempotency_key) DO NOTHING
"""

RECORD_ATTEMPTS = """
INSERT INTO delivery_attempt (
    delivery_id, number, outcome, http_status, duration_ms, error, error_code,
    request_summary, response_summary, lease_owner, created_at
)
SELECT
    d.id,
    row_number() OVER (PARTITION BY a.delivery_id ORDER BY a.created_at, a.id),
    a.outcome, a.http_status, a.duration_ms, a.error, a.error_code, '{}'::jsonb, '', '',
    a.created_at
FROM calls_salesforceattempt a
JOIN calls_salesforcedelivery s ON s.id = a.delivery_id
JOIN delivery_delivery d ON d.target_kind = 'salesforce' AND d.idempotency_key = s.key
"""


def carry(apps, schema_editor):  # type: ignore[no-untyped-def]
    host = urlsplit(getattr(settings, "SALESFORCE_LOGIN_URL", "") or "").netloc
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(RECORDS, [host])
        cursor.execute(RECORD_ATTEMPTS)


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0002_queue_team'),
        ('delivery', '0001_engine'),
    ]

    operations = [
        migrations.RunPython(carry, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='salesforcedelivery',
            name='call',
        ),
        migrations.RemoveField(
            model_name='salesforcedelivery',
            name='escalation',
        ),
        migrations.DeleteModel(
            name='SalesforceAttempt',
        ),
        migrations.DeleteModel(
            name='SalesforceDelivery',
        ),
    ]
