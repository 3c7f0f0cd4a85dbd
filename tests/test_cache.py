"""The cache's building blocks: a cross-process lock and staging directories that only become
entries when the work succeeds."""

import multiprocessing
import time

import pytest

from forge.cache import file_lock, remove_stale_staging, staging_dir


def _hold(lock_path, log_path, tag):
    with file_lock(lock_path):
        with open(log_path, "a") as fh:
            fh.write(f"{tag}-in\n")
        time.sleep(0.3)
        with open(log_path, "a") as fh:
            fh.write(f"{tag}-out\n")


def test_lock_serialises_processes(tmp_path):
    lock, log = tmp_path / "x.lock", tmp_path / "log"
    procs = [multiprocessing.Process(target=_hold, args=(lock, log, t)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
    lines = log.read_text().split()
    assert len(lines) == 4
    assert lines[0][0] == lines[1][0] and lines[2][0] == lines[3][0]  # never interleaved


def test_failed_work_leaves_no_entry(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(RuntimeError):
        with staging_dir(final) as stage:
            (stage / "half.txt").write_text("partial")
            raise RuntimeError("boom")
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_interrupted_work_leaves_no_entry(tmp_path):
    final = tmp_path / "entry"
    with pytest.raises(KeyboardInterrupt):
        with staging_dir(final) as stage:
            (stage / "half.txt").write_text("partial")
            raise KeyboardInterrupt
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_successful_work_is_renamed_into_place_and_stale_staging_removed(tmp_path):
    final = tmp_path / "entry"
    stale = tmp_path / ".entry.tmp-dead"
    stale.mkdir()
    other = tmp_path / ".other.tmp-live"
    other.mkdir()
    remove_stale_staging(final)
    assert not stale.exists() and other.exists()  # only this entry's leftovers
    with staging_dir(final) as stage:
        (stage / "ok").write_text("1")
    assert (final / "ok").read_text() == "1"
