"""Channel replies and web chat verification codes move to the delivery engine.

Every row is carried into ``delivery_delivery`` (pending, retrying, succeeded and dead
letters alike) with its attempt log, then the old tables and columns go. Open deliveries
keep their ``next_attempt_at`` (or none): the engine's sweep sends them, so in-flight Celery
tasks of the old names can be dropped at deploy time. Reversing recreates the old tables
empty (the engine rows stay where they are).
"""

from django.db import migrations

REPLIES = """
INSERT INTO delivery_delivery (
    target_kind, target_key, idempotency_key, subject_type, subject_id, payload, status,
    attempts, total_attempts, next_attempt_at, lease_owner, last_error, last_http_status,
    error_code, external_id, possible_duplicate, completed_at, created_at, updated_at
)
SELECT
    'channel_reply',
    o.channel || ':' || COALESCE(o.account_id::text, ''),
    'message:' || o.message_id,
    'ticket',
    m.ticket_id::text,
    jsonb_build_object('message_id', o.message_id, 'account_id', o.account_id,
                       'channel', o.channel),
    o.status,
    o.attempts,
    (SELECT count(*) FROM channels_app_deliveryattempt a WHERE a.delivery_id = o.id),
    CASE WHEN o.status IN ('pending', 'retrying') THEN o.next_attempt_at END,
    '',
    o.last_error,
    o.last_http_status,
    o.error_code,
    o.external_message_id,
    false,
    o.completed_at,
    o.created_at,
    o.updated_at
FROM channels_app_outbounddelivery o
JOIN tickets_message m ON m.id = o.message_id
ON CONFLICT (target_kind, idempotency_key) DO NOTHING
"""

REPLY_ATTEMPTS = """
INSERT INTO delivery_attempt (
    delivery_id, number, outcome, http_status, duration_ms, error, error_code,
    request_summary, response_summary, lease_owner, created_at
)
SELECT
    d.id,
    row_number() OVER (PARTITION BY a.delivery_id ORDER BY a.created_at, a.id),
    a.outcome, a.http_status, a.duration_ms, a.error, '', a.request_body, a.response_body,
    '', a.created_at
FROM channels_app_deliveryattempt a
JOIN channels_app_outbounddelivery o ON o.id = a.delivery_id
JOIN delivery_delivery d
  ON d.target_kind = 'channel_reply' AND d.idempotency_key = 'message:' || o.message_id
"""

CODES = """
INSERT INTO delivery_delivery (
    target_kind, target_key, idempotency_key, subject_type, subject_id, payload, status,
    attempts, total_attempts, next_attempt_at, expires_at, lease_owner, last_error,
    last_http_status, error_code, external_id, possible_duplicate, completed_at, created_at,
    updated_at
)
SELECT
    'webchat_verification',
    'email:' || COALESCE(v.email_account_id::text, ''),
    'webchat-verification:' || v.id,
    'webchat_verification',
    v.id::text,
    jsonb_build_object('verification_id', v.id),
    v.status,
    v.attempts,
    (SELECT count(*) FROM channels_app_webchatverificationattempt a WHERE a.delivery_id = v.id),
    CASE WHEN v.status IN ('pending', 'retrying') THEN v.next_attempt_at END,
    v.expires_at,
    '',
    v.last_error,
    v.last_http_status,
    '',
    '',
    false,
    v.completed_at,
    v.created_at,
    v.updated_at
FROM channels_app_webchatverification v
ON CONFLICT (target_kind, idempotency_key) DO NOTHING
"""

CODE_ATTEMPTS = """
INSERT INTO delivery_attempt (
    delivery_id, number, outcome, http_status, duration_ms, error, error_code,
    request_summary, response_summary, lease_owner, created_at
)
SELECT
    d.id,
    row_number() OVER (PARTITION BY a.delivery_id ORDER BY a.created_at, a.id),
    a.outcome, a.http_status, a.duration_ms, a.error, '', '{}'::jsonb, '', '', a.created_at
FROM channels_app_webchatverificationattempt a
JOIN delivery_delivery d
  ON d.target_kind = 'webchat_verification'
 AND d.idempotency_key = 'webchat-verification:' || a.delivery_id
"""


class Migration(migrations.Migration):

    dependencies = [
        ('channels_app', '0006_channel_account_x_oauth2_refresh'),
        ('delivery', '0001_engine'),
        ('tickets', '0003_customer_context'),
    ]

    operations = [
        migrations.RunSQL(REPLIES, migrations.RunSQL.noop),
        migrations.RunSQL(REPLY_ATTEMPTS, migrations.RunSQL.noop),
        migrations.RunSQL(CODES, migrations.RunSQL.noop),
        migrations.RunSQL(CODE_ATTEMPTS, migrations.RunSQL.noop),
        migrations.RemoveField(
            model_name='outbounddelivery',
            name='account',
        ),
        migrations.RemoveField(
            model_name='outbounddelivery',
            name='message',
        ),
        migrations.RemoveField(
            model_name='webchatverificationattempt',
            name='delivery',
        ),
        migrations.RemoveField(
            model_name='webchatverification',
            name='attempts',
        ),
        migrations.RemoveField(
            model_name='webchatverification',
            name='completed_at',
        ),
        migrations.RemoveField(
            model_name='webchatverification',
            name='last_error',
        ),
        migrations.RemoveField(
            model_name='webchatverification',
            name='last_http_status',
        ),
        migrations.RemoveField(
            model_name='webchatverification',
            name='next_attempt_at',
        ),
        migrations.RemoveField(
            model_name='webchatverification',
            name='status',
        ),
        migrations.DeleteModel(
            name='DeliveryAttempt',
        ),
        migrations.DeleteModel(
            name='OutboundDelivery',
        ),
        migrations.DeleteModel(
            name='WebchatVerificationAttempt',
        ),
    ]
