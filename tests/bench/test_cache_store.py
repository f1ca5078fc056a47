"""Faults of the model cache and the result store (docs/errors.md, "Cache and store faults"):
damaged files are detected, never trusted and never advised to be loaded unsafely; a full disk is
one ``OSError`` naming the file; two processes never train one model twice."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
import warnings

import pytest
import torch
from torch import nn

from forgetkit.bench.store import ResultStore
from forgetkit.cache import CorruptCheckpointWarning, ModelCache

ROW = dict(experiment="e", method="ga", weighting="uniform", request="r", seed=0, status="ok",
           metrics={"FA": 1.0}, params={}, provenance={})


def _saved(tmp_path) -> tuple[ModelCache, nn.Module]:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    cache = ModelCache(tmp_path)
    cache.save("k", model, {"seconds": 1.5})
    return cache, model


def test_entry_records_sha256_and_round_trips(tmp_path):
    cache, model = _saved(tmp_path)
    meta = json.loads((tmp_path / "k.json").read_text())
    assert len(meta["sha256"]) == 64 and meta["seconds"] == 1.5
    fresh = nn.Linear(4, 3)
    assert cache.load("k", fresh)["seconds"] == 1.5
    assert torch.equal(fresh.weight, model.weight)


@pytest.mark.parametrize("damage", ["truncated", "random-bytes", "other-weights", "bad-metadata"])
def test_damaged_checkpoint_is_treated_as_missing_with_a_warning(tmp_path, damage):
    cache, _ = _saved(tmp_path)
    pt = tmp_path / "k.pt"
    if damage == "truncated":
        pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    elif damage == "random-bytes":
        pt.write_bytes(os.urandom(pt.stat().st_size))
    elif damage == "other-weights":  # a readable file that is not the one recorded
        torch.save({"weight": torch.zeros(3, 4), "bias": torch.zeros(3)}, pt)
    else:
        (tmp_path / "k.json").write_text("{not json")
    model = nn.Linear(4, 3)
    before = model.weight.clone()
    with pytest.warns(CorruptCheckpointWarning, match=r"k\.pt is unusable .*treating it as missing") as rec:
        assert cache.load("k", model) is None
    assert torch.equal(model.weight, before)  # nothing half-loaded
    assert "weights_only" not in str(rec[0].message)  # never advise unsafe loading


def test_damaged_checkpoint_is_retrained_and_replaced(tmp_path):
    cache, _ = _saved(tmp_path)
    (tmp_path / "k.pt").write_bytes(b"\x00garbage")
    trained = []

    def train(m):
        trained.append(1)
        with torch.no_grad():
            m.weight.fill_(2.0)
        return {"seconds": 0.1}

    with pytest.warns(CorruptCheckpointWarning):
        model, meta, now = cache.get_or_train("k", lambda: nn.Linear(4, 3), train)
    assert now and trained == [1] and float(model.weight.detach()[0, 0]) == 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the replacement is sound: no warning any more
        again, _, now = cache.get_or_train("k", lambda: nn.Linear(4, 3), train)
    assert not now and trained == [1] and float(again.weight.detach()[0, 0]) == 2.0
    assert not list(tmp_path.glob("*.tmp"))


def test_entry_without_hash_from_an_older_cache_still_loads(tmp_path):
    cache, model = _saved(tmp_path)
    (tmp_path / "k.json").write_text(json.dumps({"seconds": 1.5}))
    fresh = nn.Linear(4, 3)
    assert cache.load("k", fresh) == {"seconds": 1.5} and torch.equal(fresh.weight, model.weight)


def test_full_disk_while_saving_names_the_file_and_keeps_the_old_entry(tmp_path, monkeypatch):
    cache, model = _saved(tmp_path)
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(OSError) as err:
        cache.save("k", nn.Linear(4, 3))
    assert err.value.errno == errno.ENOSPC and err.value.filename.endswith("k.json")
    monkeypatch.undo()
    fresh = nn.Linear(4, 3)
    assert cache.load("k", fresh) is not None and torch.equal(fresh.weight, model.weight)
    assert not list(tmp_path.glob("*.tmp"))


_WORKER = textwrap.dedent("""
    import sys, time, torch
    from torch import nn
    from forgetkit.cache import ModelCache
    root, log = sys.argv[1], sys.argv[2]
    def train(m):
        with open(log, "a") as f:
            f.write("trained\\n")
        time.sleep(1.0)  # long enough for the other process to arrive while this one trains
        with torch.no_grad():
            m.weight.fill_(7.0)
        return {"seconds": 1.0}
    torch.manual_seed(int(sys.argv[3]))
    model, meta, now = ModelCache(root).get_or_train("shared", lambda: nn.Linear(4, 3), train)
    print(now, float(model.weight[0, 0]))
""")


def test_two_processes_never_train_the_same_model_twice(tmp_path):
    log = tmp_path / "log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path / "cache"), str(log), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert log.read_text().splitlines() == ["trained"]
    results = sorted(o[0].split() for o in outs)
    assert results == [["False", "7.0"], ["True", "7.0"]]


def test_lock_blocks_a_second_holder_until_released(tmp_path):
    """flock locks belong to an open file, so a thread of this process contends like another process."""
    import threading

    cache = ModelCache(tmp_path)
    held = threading.Event()

    def hold():
        with cache.lock("k"):
            held.set()
            time.sleep(1.0)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    start = time.perf_counter()
    with cache.lock("other"):  # other keys are not blocked
        assert time.perf_counter() - start < 0.5
    with cache.lock("k"):
        assert time.perf_counter() - start > 0.5
    t.join()


# -- the result store ------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["random-bytes", "truncated-pages"])
def test_corrupted_store_is_named_and_left_untouched(tmp_path, damage):
    path = tmp_path / "results.sqlite"
    if damage == "random-bytes":
        path.write_bytes(os.urandom(4096))
    else:
        with ResultStore(path) as s:
            s.put(key="a", **ROW)
        data = path.read_bytes()
        path.write_bytes(data[:100] + os.urandom(len(data) - 100))
    before = path.read_bytes()
    with pytest.raises(ValueError) as err:
        ResultStore(path)
    msg = str(err.value)
    assert str(path) in msg and "left untouched" in msg and "another --out" in msg and "mv " in msg
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"]


def test_full_disk_in_the_store_is_enospc_and_keeps_finished_rows(tmp_path):
    """SQLite's own "database or disk is full" (a page limit stands in for the disk)."""
    path = tmp_path / "results.sqlite"
    with ResultStore(path) as s:
        s.put(key="a", **ROW)
        s._db.execute("PRAGMA journal_mode=DELETE")
        pages = s._db.execute("PRAGMA page_count").fetchone()[0]
        s._db.execute(f"PRAGMA max_page_count={pages}")
        with pytest.raises(OSError) as err:
            s.put(key="b", **{**ROW, "metrics": {"FA": 1.0, "blob": "x" * 200_000}})
        assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
        assert [r["key"] for r in s.rows()] == ["a"]
