"""The REST API never answers 5xx, whatever the schema allows (or nearly allows) to be sent.

A bounded schemathesis run in ``make test`` (``FUZZ_MAX_EXAMPLES`` per operation and mode,
default 15, with an agent's key and a supervisor's key); ``bench/fuzz_api.py`` runs longer
and prints the figures. See ``tests/api_fuzz.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from django.test import override_settings

from tests import api_fuzz
from tests.authz_world import World, build_world

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[World]:
    media = tmp_path_factory.mktemp("fuzz-media")
    with (
        django_db_blocker.unblock(),
        override_settings(
            MEDIA_ROOT=media,
            S3_ENABLED=False,
            API_ANON_RATE_LIMIT_PER_MINUTE=10_000_000,
            CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE=10_000_000,
        ),
    ):
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield build_world()
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


@pytest.mark.parametrize("key", ["key_agent_in", "key_supervisor"])
def test_api_answers_no_5xx(world: World, db: Any, key: str) -> None:
    raw = world.keys[key]
    assert raw is not None
    with api_fuzz.in_process_requests() as app:
        schema = api_fuzz.load_schema(app, raw)
        stats = api_fuzz.fuzz(
            world=world, app=app, schema=schema, keys={key: raw}, max_examples=MAX_EXAMPLES
        )
    print(f"\n{key}\n{stats.report()}")
    assert stats.cases >= stats.operations
    assert stats.server_errors == 0, stats.report()
