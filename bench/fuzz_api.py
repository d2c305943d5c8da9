#!/usr/bin/env python
"""API fuzz run: every operation of /api/schema/ with schemathesis, longer than `make test`.

Prints the operations, cases, status-code histogram, 5xx count (with a curl line for each)
and seconds, per key (an agent of the ticket's team, a supervisor) and in total.

    .venv/bin/python bench/fuzz_api.py                        # 100 examples per operation
    .venv/bin/python bench/fuzz_api.py --examples 300 --seed 7
    .venv/bin/python bench/fuzz_api.py --only "/api/tickets"  # operations whose label has it

In-process (WSGI, no server), on the test profile's PostgreSQL and Redis (`make test`'s,
with SUPPORT_REDIS_TEST_PORT honoured) in a database of its own (support_bench_fuzz) and
Redis db 3. The whole run, world included, is one transaction rolled back at the end, and
each case runs in a savepoint rolled back after it: nothing leaks between cases or runs.
Exit status 1 when any answer was a 5xx.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness

BENCH_DB = "support_bench_fuzz"


def setup() -> dict[str, str]:
    import subprocess

    import services  # scripts/services.py (on the path through _harness)

    env = dict(os.environ)
    env["ENVIRONMENT"] = "test"
    env.update(services.start("test"))
    env.update(_harness.isolated(env, BENCH_DB))
    env.update(
        {
            "MEDIA_ROOT": tempfile.mkdtemp(prefix="fuzz-media-"),
            "API_ANON_RATE_LIMIT_PER_MINUTE": "100000000",
            "CHANNELS_WEBHOOK_RATE_LIMIT_PER_MINUTE": "100000000",
            "DJANGO_SETTINGS_MODULE": "support.settings",
        }
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=_harness.ROOT, env=env, check=True
    )
    os.environ.update(env)
    import django

    django.setup()
    import logging

    # Every 4xx is a warning of django.request; 5xx (errors) stay visible.
    logging.getLogger("django.request").setLevel(logging.ERROR)
    _harness.drop_queued_tasks(env)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=100, help="per operation and mode")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--only", default="", help="only operations whose label has this")
    parser.add_argument("--modes", default="positive,negative")
    parser.add_argument("--keys", default="key_agent_in,key_supervisor")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)

    env = setup()
    from django.db import transaction

    from tests import api_fuzz
    from tests.authz_world import build_world

    total = api_fuzz.FuzzStats()
    with transaction.atomic():
        world = build_world()
        with api_fuzz.in_process_requests() as app:
            schema = api_fuzz.load_schema(app, str(world.keys["key_agent_in"]))
            for key in args.keys.split(","):
                raw = world.keys[key]
                assert raw, key
                stats = api_fuzz.fuzz(
                    world=world,
                    app=app,
                    schema=schema,
                    keys={key: raw},
                    max_examples=args.examples,
                    derandomize=False,
                    seed=seed,
                    modes=tuple(args.modes.split(",")),
                    only=(lambda label: args.only in label) if args.only else None,
                )
                print(f"== {key}\n{stats.report()}\n", flush=True)
                total.merge(stats)
        transaction.set_rollback(True)
    _harness.drop_queued_tasks(env)
    print(f"== total (examples {args.examples} per operation and mode, seed {seed})")
    print(total.report())
    return 1 if total.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
