"""The content-addressed cache: keyed by content, built once even under concurrency, atomic."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from tinyfw import cache


def _build_slowly(root: str, log: str) -> str:
    def build(tmp: Path) -> None:
        with open(log, "a") as f:
            f.write("built\n")
        time.sleep(0.5)
        (tmp / "artefact.txt").write_text("payload")

    return str(cache.ensure(Path(root), "thing", {"a": 1, "b": [1, 2]}, build))


def test_concurrent_requests_build_once(tmp_path):
    log = tmp_path / "builds.log"
    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        paths = pool.starmap(_build_slowly, [(str(tmp_path), str(log))] * 4)
    assert len(set(paths)) == 1
    assert log.read_text().count("built") == 1
    assert (Path(paths[0]) / "artefact.txt").read_text() == "payload"
    assert (Path(paths[0]) / "key.json").exists()


def test_key_depends_on_content_not_order():
    assert cache.key_of({"a": 1, "b": 2}) == cache.key_of({"b": 2, "a": 1})
    assert cache.key_of({"a": 1}) != cache.key_of({"a": 2})


def test_failed_build_leaves_nothing_and_retries(tmp_path):
    def broken(tmp: Path) -> None:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        cache.ensure(tmp_path, "thing", {"k": 1}, broken)
    entry = cache.entry(tmp_path, "thing", {"k": 1})
    assert not entry.exists()
    assert [p for p in entry.parent.iterdir() if not p.name.endswith(".lock")] == []
    calls = []
    path = cache.ensure(tmp_path, "thing", {"k": 1}, lambda tmp: calls.append((tmp / "ok").write_text("1")))
    assert path == entry and (entry / "ok").exists() and len(calls) == 1
    cache.ensure(tmp_path, "thing", {"k": 1}, lambda tmp: calls.append(1))
    assert len(calls) == 1  # second request is a cache hit


def _hold_and_build(root: str, started: str) -> None:
    def build(tmp: Path) -> None:
        Path(started).write_text("1")
        time.sleep(1.5)
        (tmp / "artefact.txt").write_text("payload")

    cache.ensure(Path(root), "thing", {"k": "waited"}, build)


def test_a_job_that_waited_for_another_jobs_build_says_so(tmp_path):
    started = tmp_path / "started"
    ctx = mp.get_context("spawn")
    builder = ctx.Process(target=_hold_and_build, args=(str(tmp_path), str(started)))
    builder.start()
    t0 = time.monotonic()
    while not started.exists():  # the other job holds the lock and is building
        assert time.monotonic() - t0 < 120 and builder.is_alive()
        time.sleep(0.05)
    info: dict = {}
    path = cache.ensure(tmp_path, "thing", {"k": "waited"}, lambda tmp: pytest.fail("built twice"), info=info)
    builder.join(60)
    assert (path / "artefact.txt").read_text() == "payload"
    assert info["built"] is False and info["waited_s"] > 0
    own: dict = {}
    cache.ensure(tmp_path, "thing", {"k": "mine"}, lambda tmp: (tmp / "x").write_text("1"), info=own)
    assert own == {"built": True, "waited_s": 0.0}


def test_orphaned_tmp_dirs_of_killed_builds_are_removed_on_the_next_build(tmp_path):
    entry = cache.entry(tmp_path, "thing", {"k": 2})
    orphan = entry.parent / f".{entry.name}.tmp-deadbeef"  # what a kill -9 mid-build leaves
    (orphan / "half").mkdir(parents=True)
    other = entry.parent / ".0123456789abcdef.tmp-cafe0000"  # another key's build: not ours to touch
    other.mkdir()
    cache.ensure(tmp_path, "thing", {"k": 2}, lambda tmp: (tmp / "ok").write_text("1"))
    assert not orphan.exists() and other.exists() and (entry / "ok").exists()
