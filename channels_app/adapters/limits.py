"""The rules of what one reply may carry, as words people read: whether a file's type is
taken, the types and kinds in words, and every way a reply breaks its channel's
``ReplyLimits``. One function decides (:func:`reply_limits_problems`): the check when an
agent sends and before the send (``channels_app.services.reply_limits``) and an adapter's
own guard before its first call (``channels_app.adapters.parts.files_check``) use it, so a
refusal reads the same wherever it is made.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence

from channels_app.adapters.base import ReplyLimits
from tickets.reply_rules import ReplyFile, size_words

#: Content types named in words in the reply box (others are shown as they are).
_TYPE_WORDS = {
    "image/": "images",
    "audio/": "audio",
    "video/": "video",
    "text/": "text files",
    "application/pdf": "PDF",
    # the types the adapters name, in words that do not depend on this machine's
    # mime.types (the others: their usual extension)
    "image/jpeg": "JPG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
    "video/mp4": "MP4",
    "video/3gpp": "3GP",
    "audio/aac": "AAC",
    "audio/amr": "AMR",
    "audio/mpeg": "MP3",
    "audio/mp4": "M4A",
    "audio/x-m4a": "M4A",
    "audio/ogg": "OGG",
    "audio/wav": "WAV",
    "audio/x-wav": "WAV",
    "text/plain": "TXT",
}


#: The files a ``file_max_bytes_by_type`` entry names, in words (others: their type in
#: words, "PDF files").
_KIND_WORDS = {"image/": "images", "video/": "video", "audio/": "audio", "image/gif": "GIFs"}


def kind_words(limits: ReplyLimits, content_type: str) -> str:
    """The files whose size limit applies to ``content_type``, in words: "images",
    "GIFs", "video", "audio", "documents" (``other_files_word``), else "files"."""
    prefix, _ = limits.rule_for(content_type)
    if not prefix:
        return limits.other_files_word if limits.file_max_bytes_by_type else "files"
    return _KIND_WORDS.get(prefix) or f"{_type_word(prefix)} files"


def type_allowed(content_type: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``content_type`` is one of ``allowed`` (exact, or a prefix ending in "/");
    an empty ``allowed``: any type."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not allowed:
        return True
    return any(kind.startswith(a) if a.endswith("/") else kind == a for a in allowed)


def _type_word(content_type: str) -> str:
    """A type as people name it: "images" for ``image/``, else its usual extension ("PDF",
    "JPG", "DOCX"), else the type itself."""
    if content_type in _TYPE_WORDS:
        return _TYPE_WORDS[content_type]
    extension = mimetypes.guess_extension(content_type, strict=False)
    return extension.lstrip(".").upper() if extension else content_type


def types_words(allowed: tuple[str, ...]) -> str:
    """``ReplyLimits.file_types`` in words, each once ("JPG, PNG, WEBP"); "any type"."""
    if not allowed:
        return "any type"
    return ", ".join(dict.fromkeys(_type_word(a) for a in allowed))


def reply_limits_problems(
    limits: ReplyLimits, *, label: str, text: str, files: Sequence[ReplyFile]
) -> dict[str, list[str]]:
    """What a reply breaks of ``limits`` (``label``: the channel as people name it), by
    field: ``body`` (its length), ``files`` (any at all, how many, how big, which type)."""
    problems: dict[str, list[str]] = {}
    if limits.text_max_chars is not None and len(text) > limits.text_max_chars:
        problems["body"] = [
            f"{label} replies can be at most {limits.text_max_chars:,} characters; "
            f"this one has {len(text):,}."
        ]
    elif limits.text_max_bytes is not None:
        used = len(text.encode("utf-8", "surrogatepass"))
        if used > limits.text_max_bytes:
            problems["body"] = [
                f"{label} replies can be at most {limits.text_max_bytes:,} bytes of text; "
                f"this one has {used:,} (emoji and accented letters take 2–4 bytes each)."
            ]
    if not files:
        return problems
    refused: list[str] = []
    if not limits.files:
        refused.append(limits.files_refusal or f"{label} replies can't carry files.")
    else:
        if limits.files_max_count and len(files) > limits.files_max_count:
            refused.append(
                f"{label} replies can carry at most {limits.files_max_count} "
                f"file{'s' if limits.files_max_count != 1 else ''}; this one has {len(files)}."
            )
        total = sum(item.size for item in files)
        if limits.files_max_total_bytes and total > limits.files_max_total_bytes:
            refused.append(
                f"{label} replies can carry at most {size_words(limits.files_max_total_bytes)} "
                f"of files together; these are {size_words(total)}."
            )
        for item in files:
            largest = limits.max_bytes_for(item.content_type)
            if largest and item.size > largest:
                refused.append(
                    f"{label} {kind_words(limits, item.content_type)} can be at most "
                    f"{size_words(largest)}; {item.filename} is {size_words(item.size)}."
                )
            if not type_allowed(item.content_type, limits.file_types):
                shown = item.content_type or "unknown"
                refused.append(
                    f"{label} replies can't carry {item.filename} ({shown}); they take "
                    f"{types_words(limits.file_types)}."
                )
    if refused:
        problems["files"] = refused
    return problems
