"""The word-piece table distilled from MiniLM (``support.static_table``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from support import minilm, static_table


def _fake_build(calls: list[int]) -> object:
    def build(progress: object = None) -> np.ndarray:
        calls.append(1)
        rng = np.random.default_rng(len(calls))
        return rng.normal(size=(static_table.VOCABULARY, minilm.DIMENSIONS)).astype(np.float32)

    return build


@pytest.fixture(autouse=True)
def _no_memory_between_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(static_table, "_tables", {})
    monkeypatch.setattr(static_table, "_encoders", {})
    monkeypatch.setattr(static_table, "_building", set())
    monkeypatch.setattr(static_table, "_warned", set())


def test_a_row_is_what_the_encoder_gives_the_piece_alone() -> None:
    rows = static_table.table()  # the machine's cache (built once, shared with the router)
    assert rows.shape == (static_table.VOCABULARY, minilm.DIMENSIONS)
    assert rows.dtype == np.float16
    encoder = minilm.MiniLM()  # the float32 graph the table is built from
    for word in ("order", "password", "hello"):  # words that are one piece
        piece = encoder._tokenizer.token_to_id(word)
        assert piece is not None
        row = rows[piece].astype(np.float32)
        cosine = float(encoder.encode([word])[0] @ (row / np.linalg.norm(row)))
        assert cosine > 0.9999  # float16 storage rounds the fourth decimal at most


def test_a_text_is_the_normalised_mean_of_its_pieces_rows() -> None:
    enc = static_table.encoder()
    text = "My card was charged twice, refund please"
    ids = enc._tokenizer.encode(text, add_special_tokens=False).ids
    assert len(ids) > 5
    expected = enc.rows[ids].astype(np.float32).mean(axis=0)
    got = enc.encode([text, "", "refund"])
    np.testing.assert_allclose(got[0], expected / np.linalg.norm(expected), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got[[0, 2]], axis=1), 1.0, atol=1e-5)
    assert not got[1].any()  # no piece: no direction (far from every training row)
    assert enc.encode([]).shape == (0, minilm.DIMENSIONS)
    # the cut is on pieces, as the router's encoder cuts tokens
    long = "hello " * 200 + "password " * 200
    np.testing.assert_allclose(enc.encode([long])[0], enc.encode(["hello"])[0], atol=1e-6)


def test_the_table_is_built_once_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(static_table, "build", _fake_build(calls))
    first = static_table.table(tmp_path)
    path = tmp_path / static_table.TABLE_NAME
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o644  # built as root in the image, read by the app
    monkeypatch.setattr(static_table, "_tables", {})  # another process
    again = static_table.table(tmp_path)
    assert calls == [1]
    np.testing.assert_array_equal(first, again)
    assert not again.flags.writeable  # mapped read-only: one copy per machine


@pytest.mark.parametrize("damage", ["garbage", "short", "nan"])
def test_an_unsound_cached_table_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    path = tmp_path / static_table.TABLE_NAME
    if damage == "garbage":
        path.write_bytes(b"not a table")
    elif damage == "short":
        np.save(path, np.zeros((10, minilm.DIMENSIONS), dtype=np.float16))
    else:
        bad = np.zeros((static_table.VOCABULARY, minilm.DIMENSIONS), dtype=np.float16)
        bad[0, 0] = np.nan
        np.save(path, bad)
    calls: list[int] = []
    monkeypatch.setattr(static_table, "build", _fake_build(calls))
    rows = static_table.table(tmp_path)
    assert calls == [1]
    assert rows.shape == (static_table.VOCABULARY, minilm.DIMENSIONS)
    assert np.isfinite(rows[:100]).all()


def test_an_unwritable_cache_keeps_the_table_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder would be")
    calls: list[int] = []
    monkeypatch.setattr(static_table, "build", _fake_build(calls))
    rows = static_table.table(blocked / "cache")
    assert calls == [1]
    assert rows.dtype == np.float16
    assert rows.shape == (static_table.VOCABULARY, minilm.DIMENSIONS)


def test_a_cached_table_others_may_write_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(static_table, "build", _fake_build(calls))
    first = static_table.table(tmp_path)
    path = tmp_path / static_table.TABLE_NAME
    path.chmod(0o666)  # anyone could have replaced it
    monkeypatch.setattr(static_table, "_tables", {})
    again = static_table.table(tmp_path)
    assert calls == [1, 1]  # rebuilt, not read
    assert not np.array_equal(first, again)
    assert path.stat().st_mode & 0o777 == 0o644  # and replaced by this user's own copy


def test_a_link_in_place_of_the_table_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    calls: list[int] = []
    monkeypatch.setattr(static_table, "build", _fake_build(calls))
    planted = static_table.table(elsewhere)  # a sound table, somewhere else
    monkeypatch.setattr(static_table, "_tables", {})
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / static_table.TABLE_NAME).symlink_to(elsewhere / static_table.TABLE_NAME)
    rows = static_table.table(cache)
    assert calls == [1, 1]  # built again, the link not read
    assert not np.array_equal(rows, planted)
    assert not (cache / static_table.TABLE_NAME).is_symlink()  # replaced by a file of ours


def test_routing_does_not_wait_for_the_table_a_background_build_brings_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    release = threading.Event()
    calls: list[int] = []
    fake = _fake_build(calls)

    def slow_build(progress: object = None) -> np.ndarray:
        release.wait(10)
        return fake()  # type: ignore[operator, no-any-return]

    monkeypatch.setattr(static_table, "build", slow_build)
    monkeypatch.setattr(static_table, "_building", set())
    assert static_table.encoder_if_ready(tmp_path) is None  # not there: no wait
    assert static_table.table_if_ready(tmp_path) is None  # one build only, still running
    release.set()
    for _ in range(200):
        if static_table.table_if_ready(tmp_path) is not None:
            break
        threading.Event().wait(0.05)
    rows = static_table.table_if_ready(tmp_path)
    assert rows is not None
    assert calls == [1]
    enc = static_table.encoder_if_ready(tmp_path)
    assert enc is not None
    assert enc.encode(["hello"]).shape == (1, minilm.DIMENSIONS)


def test_a_failed_background_build_is_not_started_again_for_every_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    tries: list[int] = []
    done = threading.Event()

    def broken(progress: object = None) -> np.ndarray:
        tries.append(1)
        done.set()
        raise RuntimeError("no graph here")

    monkeypatch.setattr(static_table, "build", broken)
    monkeypatch.setattr(static_table, "_failed", {})
    assert static_table.table_if_ready(tmp_path) is None
    assert done.wait(10)
    for _ in range(100):  # the thread records the failure and ends
        if not static_table._building:
            break
        threading.Event().wait(0.02)
    for _ in range(5):
        assert static_table.table_if_ready(tmp_path) is None
    assert tries == [1]
    monkeypatch.setattr(static_table, "RETRY_BUILD_AFTER", 0.0)  # later: tried again
    done.clear()
    assert static_table.table_if_ready(tmp_path) is None
    assert done.wait(10)
    assert len(tries) == 2


def test_an_unsound_cached_table_is_reported_once_not_for_every_routed_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / static_table.TABLE_NAME).write_bytes(b"not a table")
    with caplog.at_level("WARNING", logger="support.static_table"):
        for _ in range(5):
            assert static_table._load(tmp_path / static_table.TABLE_NAME) is None
    assert caplog.text.count("is not a sound word-piece table") == 1
