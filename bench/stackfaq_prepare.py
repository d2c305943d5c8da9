#!/usr/bin/env python
"""Convert StackFAQ (TakeLab) into kb_ingest documents and kb_eval queries.

Each <qapair> thread becomes one document (id ``thread-NNN``, title = the StackExchange
question, text = the question and its answers); each <rephr> paraphrase (not the ``*``
separator) becomes a query whose only relevant document is its thread.

Usage: python bench/stackfaq_prepare.py [XML] [--out DIR]
       (XML defaults to $STACKFAQ_XML or ../shared/data/stackfaq/stackExchange-FAQ.xml)
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CANDIDATES = [
    os.environ.get("STACKFAQ_XML", ""),
    str(ROOT.parent / "shared/data/stackfaq/stackExchange-FAQ.xml"),
    str(ROOT.parent.parent / "shared/data/stackfaq/stackExchange-FAQ.xml"),
    "/work/shared/data/stackfaq/stackExchange-FAQ.xml",
]


def find_xml() -> Path | None:
    for candidate in CANDIDATES:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _text(node: ET.Element) -> str:
    return re.sub(r"\s+", " ", html.unescape(node.text or "")).strip()


def convert(xml_path: Path) -> tuple[list[dict], list[dict]]:
    root = ET.parse(xml_path).getroot()  # noqa: S314
    docs, queries = [], []
    for number, pair in enumerate(root.iter("qapair"), 1):
        doc_id = f"thread-{number:03d}"
        question = _text(pair.find("question"))  # type: ignore[arg-type]
        answers = [_text(a) for a in pair.findall("answer")]
        body = "\n\n".join([question, *answers])
        docs.append({"id": doc_id, "title": question, "text": body})
        for rephr in pair.findall("rephr"):
            query = _text(rephr)
            if query and query != "*":
                queries.append({"query": query, "relevant": [doc_id]})
    return docs, queries


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml", nargs="?")
    parser.add_argument("--out", default=str(ROOT / ".devdata" / "stackfaq"))
    args = parser.parse_args()
    xml_path = Path(args.xml) if args.xml else find_xml()
    if xml_path is None or not xml_path.is_file():
        print("StackFAQ XML not found (pass its path or set STACKFAQ_XML)", file=sys.stderr)
        return 1
    docs, queries = convert(xml_path)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("docs.jsonl", docs), ("queries.jsonl", queries)):
        with open(out / name, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(docs)} documents -> {out / 'docs.jsonl'}")
    print(f"{len(queries)} queries -> {out / 'queries.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
