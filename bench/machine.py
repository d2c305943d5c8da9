#!/usr/bin/env python
"""How fast is this machine? Three small, fixed workloads whose figures let a reader compare
the other benchmarks across machines (docs/benchmarks.md: the speed targets were set, and
first met, on one machine; a machine whose figures here are twice as slow will show about
half the throughput and twice the latency in bench/api_create.py, bench/kb_ingest.py and
the routing figures, with the same code).

- ``python``: a pure-Python loop (10,000,000 additions), one core: what Django, DRF and the
  routing's per-text Python cost follow;
- ``numpy``: float32 matrix products (384 x 384 by 384 x 4,096), one BLAS thread, in GFLOP/s;
- ``encoder``: the routing encoder (``ROUTER_ENCODER``) on one short ticket text, one text
  at a time on one thread, as routing embeds, in ms per text (CPU time).

Usage (from the repository root): ``.venv/bin/python bench/machine.py [--runs 3]``. Each
figure is the median of ``--runs`` repetitions; the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TEXT = "Hi, I was charged twice for order 4471 and still have no refund, please help"


def python_loop() -> float:
    """Seconds for 10,000,000 additions in a plain loop."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return time.perf_counter() - started


def numpy_gflops() -> float:
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((384, 384), dtype=np.float32)
    b = rng.standard_normal((384, 4096), dtype=np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        a @ b  # warm-up
        started = time.perf_counter()
        for _ in range(50):
            a @ b
        seconds = time.perf_counter() - started
    return 50 * 2 * 384 * 384 * 4096 / seconds / 1e9


def encoder_ms(repeat: int = 200) -> tuple[str, float]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support.settings")
    os.environ.setdefault("ENVIRONMENT", "dev")
    import django

    django.setup()
    from routing.classifier import ROUTER_ENCODER, encoder

    model = encoder(name=ROUTER_ENCODER)
    model.encode([TEXT])  # load and warm up
    started = time.process_time()
    for _ in range(repeat):
        model.encode([TEXT])
    return ROUTER_ENCODER, (time.process_time() - started) * 1000 / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"load average before: {load}", flush=True)
    loops = [python_loop() for _ in range(args.runs)]
    print(f"python  10M-addition loop   {statistics.median(loops):6.2f} s   (runs {loops})")
    flops = [numpy_gflops() for _ in range(args.runs)]
    print(f"numpy   float32 matmul      {statistics.median(flops):6.1f} GFLOP/s (one thread)")
    name = ""
    per_text = []
    for _ in range(args.runs):
        name, ms = encoder_ms()
        per_text.append(ms)
    print(f"encoder {name:20s} {statistics.median(per_text):6.2f} ms CPU per short text")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average after: {load}")


if __name__ == "__main__":
    main()
