"""What a reply may carry on WhatsApp, Messenger, Instagram and X (``reply_limits``), and
that docs/channels.md says the same ("What a reply may carry: WhatsApp, …")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from channels_app.adapters.base import ReplyLimits, get_adapter
from channels_app.adapters.limits import kind_words

DOCS = Path(__file__).resolve().parents[2] / "docs" / "channels.md"
SECTION = "## What a reply may carry: WhatsApp, Messenger, Instagram, X"
WITH_S3 = ReplyLimits(
    text_max_bytes=1000,
    files=True,
    files_max_count=10,
    file_max_bytes=25_000_000,
    file_max_bytes_by_type=(("image/", 8_000_000),),
    other_files_word="video and audio",
)
NAMES = {"WhatsApp": "whatsapp", "Messenger": "messenger", "Instagram": "instagram", "X": "twitter"}


def docs_rows() -> dict[str, list[str]]:
    """The section's first table: channel → its cells (a later table names channels too)."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    rows: dict[str, list[str]] = {}
    for line in text[start:end].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in NAMES and NAMES[cells[0]] not in rows:
            rows[NAMES[cells[0]]] = cells[1:]
    return rows


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (
            "whatsapp",
            ReplyLimits(
                text_max_chars=4096,
                files=True,
                files_max_count=10,
                file_max_bytes=100_000_000,
                file_max_bytes_by_type=(
                    ("image/", 5_000_000),
                    ("video/", 16_000_000),
                    ("audio/", 16_000_000),
                ),
                other_files_word="documents",
                file_types=(
                    "image/jpeg",
                    "image/png",
                    "video/mp4",
                    "video/3gpp",
                    "audio/aac",
                    "audio/amr",
                    "audio/mpeg",
                    "audio/mp4",
                    "audio/ogg",
                    "text/plain",
                    "application/pdf",
                    "application/msword",
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                    "application/vnd.ms-excel",
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    "application/vnd.ms-powerpoint",
                    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
                ),
            ),
        ),
        (
            "messenger",
            ReplyLimits(
                text_max_chars=2000, files=True, files_max_count=10, file_max_bytes=25_000_000
            ),
        ),
        ("instagram", ReplyLimits(text_max_bytes=1000)),
        (
            "twitter",
            ReplyLimits(
                text_max_chars=10_000,
                files=True,
                files_max_count=10,
                file_max_bytes_by_type=(
                    ("image/gif", 15_000_000),
                    ("image/", 5_000_000),
                    ("video/", 512_000_000),
                ),
                file_types=("image/jpeg", "image/png", "image/webp", "image/gif", "video/mp4"),
            ),
        ),
    ],
)
def test_each_messaging_adapter_declares_its_providers_limits(
    channel: str, expected: ReplyLimits
) -> None:
    assert get_adapter(channel).reply_limits == expected


def test_the_docs_table_says_what_the_adapters_hold() -> None:
    rows = docs_rows()
    assert sorted(rows) == sorted(NAMES.values())
    for channel, (text, files, *_) in rows.items():
        limits = get_adapter(channel).reply_limits
        number = re.fullmatch(r"([\d,]+) (characters|bytes of UTF-8)", text)
        assert number is not None, (channel, text)
        counted = (
            limits.text_max_chars if number.group(2) == "characters" else limits.text_max_bytes
        )
        assert int(number.group(1).replace(",", "")) == counted, channel
        assert files.startswith("yes") == limits.files, (channel, files)
        if channel == "instagram":  # files with S3 only: the limits that then apply
            limits = WITH_S3
        if limits.files:
            count = re.search(r"up to (\d+) per reply", files)
            assert count is not None, (channel, files)
            assert int(count.group(1)) == limits.files_max_count, channel
            # "each up to 25 MB", or per kind: "images up to 5 MB, video and audio up to
            # 16 MB, documents up to 100 MB" (the others only where they have a size)
            sizes = re.search(r"each up to (\d+) MB", files)
            if not limits.file_max_bytes_by_type:
                assert sizes is not None, (channel, files)
                assert int(sizes.group(1)) * 1_000_000 == limits.file_max_bytes, channel
            else:
                said = {
                    kind: int(size) * 1_000_000
                    for kinds, size in re.findall(r"([A-Za-z ]+?) up to (\d+) MB", files)
                    for kind in kinds.strip().split(" and ")
                }
                for prefix, size in limits.file_max_bytes_by_type:
                    word = kind_words(limits, prefix)
                    assert said.get(word) == size, (channel, prefix, said)
                if limits.file_max_bytes:
                    for word in limits.other_files_word.split(" and "):
                        assert said.get(word) == limits.file_max_bytes, (channel, word, said)
                else:
                    assert limits.other_files_word not in said, (channel, said)


def test_instagram_takes_files_only_when_they_are_reachable_from_outside(settings: Any) -> None:
    """Instagram fetches a file by its URL: with S3 (signed URLs) it may carry files, with
    files stored on this server none (a property the compose-time check reads)."""
    settings.S3_ENABLED = False
    assert get_adapter("instagram").reply_limits == ReplyLimits(text_max_bytes=1000)
    settings.S3_ENABLED = True
    assert get_adapter("instagram").reply_limits == ReplyLimits(
        text_max_bytes=1000,
        files=True,
        files_max_count=10,
        file_max_bytes=25_000_000,
        file_max_bytes_by_type=(("image/", 8_000_000),),
        other_files_word="video and audio",
        file_types=(
            "image/png",
            "image/jpeg",
            "video/mp4",
            "video/ogg",
            "video/x-msvideo",
            "video/quicktime",
            "video/webm",
            "audio/aac",
            "audio/mp4",
            "audio/x-m4a",
            "audio/wav",
            "audio/x-wav",
        ),
    )
