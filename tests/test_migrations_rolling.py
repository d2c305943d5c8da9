"""A release's migrations must work with the previous release's code still running
(docs/deploy.md, "Upgrades"): the old tasks keep inserting rows while the migration runs
and the new ones start, and they do not know a new column. Django's ``default=`` is not
kept in the table (``AddField`` drops it once existing rows are filled), so a new column
that is neither nullable nor given ``db_default=`` makes every insert of the old code fail
(NOT NULL) during a rolling deploy.

Columns added that way before this test existed are listed below: they were released, and
their window is over. Add nothing to the list; give a new column ``db_default=`` (or
``null=True``)."""

from __future__ import annotations

from django.db import migrations
from django.db.migrations.loader import MigrationLoader
from django.db.models import NOT_PROVIDED

PROJECT_APPS = {
    "support",
    "tickets",
    "channels_app",
    "knowledge",
    "calls",
    "routing",
    "dashboard",
    "alerts",
    "events_out",
}

RELEASED_BEFORE_THE_RULE = {
    "calls.0009_result_versions.call.s3_output_version",
    "calls.0009_result_versions.callanalytics.source_ref",
    "calls.0009_result_versions.callanalytics.version",
    "calls.0009_result_versions.transcript.source_ref",
    "calls.0010_callevent_sweep_attempts.callevent.attempts",
    "channels_app.0003_channel_account_token_secret.channelaccount.token_secret",
    "channels_app.0006_channel_account_x_oauth2_refresh.channelaccount.auth_error",
    "channels_app.0006_channel_account_x_oauth2_refresh.channelaccount.client_id",
    "channels_app.0006_channel_account_x_oauth2_refresh.channelaccount.client_secret",
    "channels_app.0006_channel_account_x_oauth2_refresh.channelaccount.refresh_token",
    "knowledge.0003_chunk_embedding_key.chunk.embedding_key",
    "knowledge.0005_chunk_embedder.chunk.embedder",
    "knowledge.0008_ingestionjob_heartbeat.ingestionjob.heartbeat_at",
    "knowledge.0009_upload_jobs.ingestionjob.file_key",
    "knowledge.0009_upload_jobs.ingestionjob.file_name",
    "knowledge.0010_objectevent_sweep.objectevent.attempts",
    "knowledge.0010_objectevent_sweep.objectevent.last_error",
    "knowledge.0010_objectevent_sweep.objectevent.note",
    "support.0002_api_key_role.apikey.role",
    "tickets.0001_initial.message.ticket",
    "tickets.0005_sla_policies.ticket.sla_paused_seconds",
    "tickets.0012_attachment_download_status.attachment.download_status",
    "tickets.0012_attachment_download_status.attachment.download_error",
}


def added_columns_without_a_database_default() -> set[str]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    found = set()
    for (app, name), migration in loader.disk_migrations.items():
        if app not in PROJECT_APPS:
            continue
        for op in migration.operations:
            if not isinstance(op, migrations.AddField):
                continue
            field = op.field
            if field.null or field.many_to_many or field.db_default is not NOT_PROVIDED:
                continue
            found.add(f"{app}.{name}.{op.model_name}.{op.name}")
    return found


def test_new_columns_keep_a_database_default_or_are_nullable() -> None:
    new = added_columns_without_a_database_default() - RELEASED_BEFORE_THE_RULE
    assert not new, (
        "columns added NOT NULL without db_default= (the previous release's inserts fail "
        f"during the deploy; docs/deploy.md, Upgrades): {sorted(new)}"
    )


def test_the_list_of_released_exceptions_only_shrinks() -> None:
    # An entry that no longer matches (a migration squashed or renamed) is removed, not kept.
    assert added_columns_without_a_database_default() >= RELEASED_BEFORE_THE_RULE
