"""The soak's measurements (bench/soak.py): memory and queue sampling, the books (lost and
duplicated, from the database and the fake provider's counts) and the report."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness
from _soak_load import Books, Stats

GROWTH_LIMIT = 0.10


# --- memory and CPU sampling -------------------------------------------------------------


class Sampler(threading.Thread):
    """RSS of every process of the stack every ``interval`` seconds, and the load average."""

    def __init__(
        self, procs: dict[str, subprocess.Popen[bytes]], data: Path, interval: float, redis_url: str
    ):
        super().__init__(daemon=True)
        self.procs, self.data, self.interval = procs, data, interval
        self.redis_url = redis_url
        self.queues: list[tuple[float, dict[str, int]]] = []  # Celery queue lengths
        self.samples: list[tuple[float, dict[str, int]]] = []  # (monotonic, label -> rss)
        self.loads: list[tuple[float, float]] = []
        self.stop_event = threading.Event()
        self.labels: dict[str, str] = {}

    def _tree(self) -> dict[str, Any]:
        import psutil

        found: dict[str, Any] = {}
        for name, popen in self.procs.items():
            try:
                root = psutil.Process(popen.pid)
                found[f"{name} main {root.pid}"] = root
                for child in root.children(recursive=True):
                    found[f"{name} child {child.pid}"] = child
            except psutil.Error:
                continue
        for name, pidfile in (
            ("postgres", self.data / "pg" / "postmaster.pid"),
            ("redis", self.data / "redis-run" / "redis.pid"),
        ):
            try:
                pid = int(pidfile.read_text().split()[0])
                root = psutil.Process(pid)
                found[f"{name} main {pid}"] = root
                for child in root.children(recursive=True):
                    found[f"{name} child {child.pid}"] = child
            except (OSError, ValueError, psutil.Error):
                continue
        return found

    def queue_lengths(self) -> dict[str, int]:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        return {name: int(client.llen(name)) for name in ("realtime", "celery")}

    def run(self) -> None:
        import psutil

        while not self.stop_event.is_set():
            self.queues.append((time.monotonic(), self.queue_lengths()))
            rss: dict[str, int] = {}
            for label, proc in self._tree().items():
                try:
                    rss[label] = proc.memory_info().rss
                    if label not in self.labels:
                        self.labels[label] = " ".join(proc.cmdline()[:6])[:90]
                except psutil.Error:
                    continue
            now = time.monotonic()
            self.samples.append((now, rss))
            self.loads.append((now, os.getloadavg()[0]))
            self.stop_event.wait(self.interval)


def cpu_by_others(exclude: set[int]) -> dict[str, float]:
    """CPU seconds so far of every process not in ``exclude``, by short command name."""
    import psutil

    totals: dict[str, float] = defaultdict(float)
    for proc in psutil.process_iter(["pid", "name", "cmdline", "cpu_times"]):
        if proc.info["pid"] in exclude or proc.info["cpu_times"] is None:
            continue
        cmd = proc.info["cmdline"] or [proc.info["name"] or "?"]
        words = [Path(w).name for w in cmd[:3] if not w.startswith("-")]
        key = " ".join(words)[:60] or (proc.info["name"] or "?")
        times = proc.info["cpu_times"]
        totals[f"{proc.info['pid']}:{key}"] += times.user + times.system
    return totals


# --- the books -----------------------------------------------------------------------------


def provider_counts(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/_counts", timeout=10) as response:  # loopback
        return dict(json.load(response))


def audit(books: Books, run: str, provider_url: str) -> dict[str, Any]:
    """Lost and duplicated, from the database (messages, tickets, call events) and the
    fake provider's own counts (replies)."""
    from django.db import close_old_connections

    from calls.models import Call, CallAnalytics, CallEvent, EventStatus
    from tickets.models import Direction, Message, Ticket

    close_old_connections()
    tag = f"soak{run}"
    out: dict[str, Any] = {"lost": {}, "duplicated": {}, "info": {}}
    for channel, expected in books.inbound.items():
        rows = Message.objects.filter(
            channel=channel, direction=Direction.INBOUND, channel_message_id__contains=tag
        ).values_list("channel_message_id", flat=True)
        found = Counter(str(r).strip("<>") for r in rows)
        out["lost"][f"inbound {channel}"] = len([e for e in expected if e not in found])
        out["duplicated"][f"inbound {channel}"] = sum(c - 1 for c in found.values() if c > 1)
        out["info"][f"inbound {channel} unacknowledged but recorded"] = len(set(found) - expected)
    bots = Counter(
        Ticket.objects.filter(channel="chatbot", origin_platform_id__contains=tag).values_list(
            "origin_platform_id", flat=True
        )
    )
    out["lost"]["chatbot hand-offs"] = len([s for s in books.chatbot_sessions if s not in bots])
    first_messages = Counter(
        Message.objects.filter(
            ticket__channel="chatbot",
            ticket__origin_platform_id__contains=tag,
            direction=Direction.INBOUND,
        ).values_list("ticket__origin_platform_id", flat=True)
    )
    out["duplicated"]["chatbot hand-offs"] = sum(c - 1 for c in bots.values() if c > 1) + sum(
        c - 1 for c in first_messages.values() if c > 1
    )
    subjects = Counter(
        Ticket.objects.filter(subject__startswith=f"soak {run} api ").values_list(
            "subject", flat=True
        )
    )
    out["lost"]["API creates"] = len([s for s in books.api_subjects if s not in subjects])
    out["duplicated"]["API creates"] = sum(c - 1 for c in subjects.values() if c > 1)
    counts = provider_counts(provider_url)
    accepted: dict[str, int] = counts["accepted"]
    out["lost"]["replies"] = len([m for m in books.replies if not accepted.get(m)])
    out["duplicated"]["replies"] = sum(c - 1 for m, c in accepted.items() if c > 1)
    failed = Message.objects.filter(
        direction=Direction.OUTBOUND,
        body_text__contains=f"soakreply-{run}-",
        delivery_status="failed",
    ).count()
    out["info"]["replies failed (dead letters)"] = failed
    out["info"]["replies by channel"] = dict(Counter(books.replies.values()))
    out["info"]["provider"] = {
        k: counts[k] for k in ("kinds", "injected", "unauthorized", "refreshes", "refresh_refused")
    }
    out["info"]["idempotency keys seen more than once"] = sum(
        1 for c in counts["keys"].values() if c > 1
    )
    events = dict(
        CallEvent.objects.filter(external_id__in=list(books.call_events)).values_list(
            "external_id", "status"
        )
    )
    out["lost"]["call events"] = len(
        [
            e
            for e in books.call_events
            if events.get(e) not in (EventStatus.PROCESSED, EventStatus.IGNORED)
        ]
    )
    calls = Counter(
        Call.objects.filter(contact_id__in=list(books.call_contacts)).values_list(
            "contact_id", flat=True
        )
    )
    out["lost"]["calls (CTR)"] = len([c for c in books.call_contacts if c not in calls])
    out["duplicated"]["calls (CTR)"] = sum(c - 1 for c in calls.values() if c > 1)
    out["info"]["calls analysed"] = CallAnalytics.objects.filter(
        call__contact_id__in=list(books.call_contacts)
    ).count()
    out["info"]["redeliveries answered accepted again"] = books.resent_accepted
    return out


def drain(
    books: Books, run: str, provider_url: str, seconds: float, sampler: Sampler
) -> tuple[dict[str, Any], float, float | None]:
    """Wait until nothing is missing and both Celery queues are empty (or ``seconds``);
    returns the books, the wait, and when the books were first complete."""
    started = time.monotonic()
    complete_at: float | None = None
    while True:
        result = audit(books, run, provider_url)
        elapsed = time.monotonic() - started
        if complete_at is None and not any(result["lost"].values()):
            complete_at = elapsed
        idle = not any(sampler.queue_lengths().values())
        if (complete_at is not None and idle) or elapsed > seconds:
            return result, elapsed, complete_at
        time.sleep(3)


# --- report --------------------------------------------------------------------------------


def _postgres_summed(sample: dict[str, int]) -> dict[str, int]:
    pg = ("postgres main", "postgres child")
    out = {k: v for k, v in sample.items() if not k.startswith(pg)}
    out["postgres (all processes)"] = sum(v for k, v in sample.items() if k.startswith(pg))
    return out


def _trend(
    samples: list[tuple[float, dict[str, int]]], label: str, start: float, end: float
) -> list[float]:
    """RSS (MB) at each tenth of the load, the sample nearest each mark: whether a growth
    levels off (a cache filling, the allocator) or keeps climbing (a leak)."""
    series = [(t, s[label]) for t, s in samples if label in s]
    marks = [start + k * (end - start) / 10 for k in range(11)]
    return [round(min(series, key=lambda ts: abs(ts[0] - m))[1] / 2**20, 1) for m in marks]


def memory_report(sampler: Sampler, load_start: float, load_end: float) -> list[dict[str, Any]]:
    warm = load_start + 0.2 * (load_end - load_start)
    during = [(t, s) for t, s in sampler.samples if load_start <= t <= load_end]
    after = [(t, s) for t, s in during if t >= warm]
    rows = []
    # PostgreSQL: one row for all its processes (backends come and go with the pools, and
    # each counts the shared buffers it touched)
    during = [(t, _postgres_summed(s)) for t, s in during]
    after = [(t, _postgres_summed(s)) for t, s in after]
    labels = sorted({label for _, s in during for label in s})
    for label in labels:
        series = [s[label] for _, s in after if label in s]
        if len(series) < 4:
            continue
        base = statistics.median(series[:3])
        end = statistics.median(series[-3:])
        rows.append(
            {
                "process": label,
                "cmd": sampler.labels.get(label, ""),
                "baseline_mb": base / 2**20,
                "end_mb": end / 2**20,
                "peak_mb": max(series) / 2**20,
                "growth": (end - base) / base if base else 0.0,
                "judged": not label.startswith(("postgres", "redis", "provider")),
                "trend_mb": _trend(during, label, load_start, load_end),
            }
        )
    return rows


def report(
    args: Any,
    run: str,
    stats: Stats,
    books: Books,
    books_result: dict[str, Any],
    drain_times: tuple[float, float | None],
    elapsed: float,
    sampler: Sampler,
    load_start: float,
    load_end: float,
    cpu_before: dict[str, float],
    cpu_after: dict[str, float],
    ours: set[int],
    procs: dict[str, subprocess.Popen[bytes]],
    data: Path,
) -> int:
    total = sum(len(v) for v in stats.latencies.values())
    print()
    print(
        f"== soak {run}: {elapsed / 60:.1f} min, {total} requests, {total / elapsed:.1f} req/s =="
    )
    print(f"{'kind':<18}{'n':>7}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  statuses")
    fives = broken = 0
    per_kind: dict[str, Any] = {}
    for kind in sorted(stats.latencies):
        lat = [x * 1000 for x in stats.latencies[kind]]
        codes = stats.statuses[kind]
        fives += sum(n for s, n in codes.items() if s >= 500)
        broken += sum(n for s, n in codes.items() if s <= 0)
        p50, p99 = _harness.percentile(lat, 50), _harness.percentile(lat, 99)
        shown = " ".join(f"{s}:{n}" for s, n in sorted(codes.items()))
        print(
            f"{kind:<18}{len(lat):>7}{len(lat) / elapsed:>8.2f}{p50:>9.1f}{p99:>9.1f}"
            f"{max(lat):>9.1f}  {shown}"
        )
        per_kind[kind] = {"n": len(lat), "p50_ms": p50, "p99_ms": p99, "statuses": dict(codes)}
    print(f"5xx: {fives}   broken connections / client errors: {broken}")
    for what, n in sorted(stats.errors.items()):
        print(f"  client error {what}: {n}")
    print(
        f"requests sent again after a reused keep-alive connection was found closed: "
        f"{stats.stale_retries}"
    )

    rows = memory_report(sampler, load_start, load_end)
    print(
        "\nmemory (RSS) after warm-up (first 20% of the run): baseline = median of the first 3"
        " samples after it, end = median of the last 3 during load"
    )
    print(f"{'process':<34}{'base MB':>9}{'end MB':>9}{'peak MB':>9}{'growth':>9}  command")
    over = []
    for row in rows:
        flag = ""
        if row["judged"] and row["growth"] > GROWTH_LIMIT:
            over.append(row["process"])
            flag = "  << over 10%"
        print(
            f"{row['process']:<34}{row['baseline_mb']:>9.1f}{row['end_mb']:>9.1f}"
            f"{row['peak_mb']:>9.1f}{row['growth'] * 100:>8.1f}%  {row['cmd'][:60]}{flag}"
        )
    print("RSS (MB) at each tenth of the load (0% … 100%):")
    for row in rows:
        if row["judged"] or row["process"].startswith("postgres"):
            print(f"  {row['process']:<32}" + " ".join(f"{v:>6.0f}" for v in row["trend_mb"]))
    loads = [v for t, v in sampler.loads if load_start <= t <= load_end]
    if loads:
        print(
            f"\nload average (1 min) during the run: min {min(loads):.2f}, "
            f"mean {statistics.mean(loads):.2f}, max {max(loads):.2f} on {os.cpu_count()} cores"
        )
    others: dict[str, float] = defaultdict(float)
    for key, value in cpu_after.items():
        pid = int(key.split(":", 1)[0])
        if pid in ours:
            continue
        others[key.split(":", 1)[1]] += value - cpu_before.get(key, 0.0)
    mine = sum(
        v - cpu_before.get(k, 0.0) for k, v in cpu_after.items() if int(k.split(":", 1)[0]) in ours
    )
    busiest = sorted(others.items(), key=lambda kv: -kv[1])[:8]
    print(
        f"CPU seconds during the load: the soak's own processes {mine:.0f}; others "
        f"{sum(others.values()):.0f}, busiest: "
        + ", ".join(f"{name} {sec:.0f}" for name, sec in busiest if sec >= 1)
    )

    drained, complete_at = drain_times
    during_q = [q for t, q in sampler.queues if load_start <= t <= load_end]
    if during_q:
        for name in ("realtime", "celery"):
            series = [q[name] for q in during_q]
            print(
                f"Celery queue {name!r} during the load: max {max(series)}, at the end {series[-1]}"
            )
    complete = (
        f"complete {complete_at:.0f} s after the load"
        if complete_at is not None
        else f"NOT complete when the drain stopped, {drained:.0f} s after the load"
    )
    left = sum(sampler.queue_lengths().values())
    queues = f"queues empty after {drained:.0f} s" if not left else f"{left} tasks still queued"
    print(f"\nbooks ({complete}; {queues}):")
    lost = sum(books_result["lost"].values())
    dups = sum(books_result["duplicated"].values())
    for key in books_result["lost"]:
        print(
            f"  {key:<28} lost {books_result['lost'][key]:>5}   duplicated "
            f"{books_result['duplicated'].get(key, 0):>5}"
        )
    expected = {
        **{f"inbound {c}": len(v) for c, v in books.inbound.items()},
        "chatbot hand-offs": len(books.chatbot_sessions),
        "API creates": len(books.api_subjects),
        "replies": len(books.replies),
        "call events": len(books.call_events),
        "calls (CTR)": len(books.call_contacts),
    }
    print("  accepted: " + ", ".join(f"{k} {v}" for k, v in expected.items()))
    for key, value in books_result["info"].items():
        print(f"  {key}: {value}")
    misses = []
    if over:
        misses.append(f"memory growth over 10%: {', '.join(over)}")
    queued = sum(sampler.queue_lengths().values())
    if lost and queued:
        misses.append(
            f"{lost} not found yet: --drain-seconds ran out with {queued} tasks still queued "
            "(a backlog, not necessarily a loss; give it longer)"
        )
    elif lost:
        misses.append(f"{lost} lost")
    if dups:
        misses.append(f"{dups} duplicated")
    if fives:
        misses.append(f"{fives} 5xx")
    if broken:
        misses.append(f"{broken} broken connections / client errors")
    print("\nRESULT: " + ("all targets met" if not misses else "MISSED: " + "; ".join(misses)))
    print(f"(logs of every process in {data / 'logs'})")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "run": run,
                    "minutes": args.minutes,
                    "scale": args.scale,
                    "elapsed_s": elapsed,
                    "requests": total,
                    "kinds": per_kind,
                    "fives": fives,
                    "broken": broken,
                    "client_errors": dict(stats.errors),
                    "stale_retries": stats.stale_retries,
                    "memory": rows,
                    "books": books_result,
                    "accepted": expected,
                    "misses": misses,
                    "load_avg": loads,
                },
                indent=1,
                default=str,
            )
        )
    return 1 if misses else 0
