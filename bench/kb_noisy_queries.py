# mypy: ignore-errors
"""Knowledge-base queries as customers write them: each query of a ``kb_eval`` file wrapped
in what real messages carry around the question (a greeting with the customer's name, a
signed "Thanks", an account number, an e-mail address; a signature block, "Sent from my
…", a closing). Two seeded sets with different wrappers: ``--style 1`` (the wrappers the
query cleaning was written against) and ``--style 2`` (written afterwards, to check that
it carries over).

    python bench/kb_noisy_queries.py --queries .devdata/stackfaq/queries-test.jsonl \\
        --style 1 --out .devdata/stackfaq/queries-test-noisy1.jsonl
    python manage.py kb_eval --queries .devdata/stackfaq/queries-test-noisy1.jsonl \\
        --source stackfaq [--drafts]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.noise_names import FIRST, LAST


def style_1(query: str, rng: random.Random) -> str:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    number = rng.randint(100000, 999999)
    return [
        f"Hi, this is {first} {last}. {query}",
        f"{query} Thanks, {first}",
        f"Hello, {query} My account number is {number}.",
        f"{query} You can reach me at {first.lower()}.{last.lower()}@example.com",
    ][rng.randrange(4)]


def style_2(query: str, rng: random.Random) -> str:
    first = rng.choice(["Olga", "Kwame", "Chen", "Lars", "Aiko", "Pierre"])
    last = rng.choice(["Novak", "Mensah", "Wei", "Johansson", "Tanaka", "Dubois"])
    return [
        f"Good evening! {query}\n\n--\n{first} {last}\nAcme Corp | +1 (555) 010-2233",
        f"{query}\n\nSent from my Galaxy",
        f"Dear team, {query} Best regards, {first} {last}",
        f"{query} My email: {first.lower()}@{last.lower()}.de",
        f"Hey there, {first} from Accra here. {query}",
        f"{query} Looking forward to your reply. {first}",
    ][rng.randrange(6)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", required=True, help="a kb_eval file of string queries")
    parser.add_argument("--style", type=int, choices=(1, 2), default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rng = random.Random(7 if args.style == 1 else 11)
    wrap = style_1 if args.style == 1 else style_2
    lines = []
    for line in Path(args.queries).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        row["query"] = wrap(row["query"], rng)
        lines.append(json.dumps(row))
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(lines)} queries -> {args.out}")


if __name__ == "__main__":
    main()
