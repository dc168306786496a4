"""A start is labelled with the cache state measured just before it: the sim engine's compile step is slow
without a cache entry and writes one, so the first start of a new build is cold (or primes, then is warm) and
reruns are warm; cold, warm and priming starts never share a series; weights resident in the page cache make
a cold start `cold-weights-cached` unless perfci may drop them."""

import os
from pathlib import Path

import pytest

from perfci.config import load_suite
from perfci.measure import caches, runner
from perfci.measure.caches import Cache
from perfci.store import open_db
from perfci.verdicts import series

SUITE = """
name = "t"
[[models]]
name = "m"
{model_extra}
[startup]
caches = {caches}
first_request = false
{startup_extra}
[run]
requests = 1
[sim]
startup_s = 1.0
"""


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "perfci-cache"
    monkeypatch.setenv("PERFCI_CACHE", str(home))
    return home


def suite(tmp_path: Path, caches_: str, *, model_extra: str = "", startup_extra: str = ""):
    p = tmp_path / "t.toml"
    p.write_text(SUITE.format(caches=caches_, model_extra=model_extra, startup_extra=startup_extra))
    return load_suite(p)


def starts(record):
    return [(s.cache, s.requested, s.caches["sim-compile"].entries if s.caches else None) for s in record.startups]


def test_first_warm_start_of_a_new_build_primes_then_reruns_are_warm_and_series_never_mix(tmp_path, cache_home):
    s, target = suite(tmp_path, '["warm"]'), runner.resolve_target(engine="sim")
    db = open_db(tmp_path / "p.db")
    first, _ = runner.run_and_store(suite=s, target=target, db=db, out=tmp_path / "runs")
    assert starts(first) == [("priming", "warm", 0), ("warm", "warm", 1)]
    priming, warm = first.startups
    # The priming start compiled from scratch; the warm one loaded the entry it wrote (a tenth of the time).
    assert priming.phases["compile"] > 0.3 and warm.phases["compile"] < 0.1
    again, _ = runner.run_and_store(suite=s, target=target, db=db, out=tmp_path / "runs")
    assert starts(again) == [("warm", "warm", 1)]
    cold, _ = runner.run_and_store(suite=suite(tmp_path, '["cold"]'), target=target, db=db, out=tmp_path / "runs")
    assert starts(cold) == [("cold", "cold", 0)] and cold.startups[0].phases["compile"] > 0.3

    obs = series.observations(db)
    compile_ = obs[obs["metric"] == "startup.compile"]
    by_state = compile_.groupby("load_label")["value"].agg(["min", "max", "count"])
    assert by_state["count"].to_dict() == {"cold": 1, "priming": 1, "warm": 2}
    assert by_state.loc["warm", "max"] < 0.1 < by_state.loc["cold", "min"]  # no slow start in the warm series
    stored = db.execute("SELECT cache, requested FROM startups ORDER BY run_id, idx").fetchall()
    assert sorted(stored) == [("cold", "cold"), ("priming", "warm"), ("warm", "warm"), ("warm", "warm")]


def test_cold_empties_exactly_this_builds_caches(tmp_path, cache_home):
    target = runner.resolve_target(engine="sim")
    runner.run_suite(suite=suite(tmp_path, '["warm"]'), target=target)  # primes this build's cache
    other_build = cache_home / "compile" / "another-build" / "m-0123456789" / "sim-0123456789" / "entry"
    other_config = next((cache_home / "compile" / "sim").iterdir()) / "sim-other-config" / "entry"
    for f in (other_build, other_config):
        f.parent.mkdir(parents=True)
        f.write_text("kept")
    record = runner.run_suite(suite=suite(tmp_path, '["cold", "warm"]'), target=target)
    assert starts(record) == [("cold", "cold", 0), ("warm", "warm", 1)]
    assert other_build.read_text() == "kept" and other_config.read_text() == "kept"


def test_a_model_config_change_is_a_new_cache(tmp_path, cache_home):
    target = runner.resolve_target(engine="sim")
    runner.run_suite(suite=suite(tmp_path, '["warm"]'), target=target)
    record = runner.run_suite(suite=suite(tmp_path, '["warm"]', model_extra="max_model_len = 512"), target=target)
    assert [s.cache for s in record.startups] == ["priming", "warm"]


def test_state_labels_from_measured_caches():
    full = {"populated": True, "decides": True, "entries": 3, "bytes": 10}
    empty = {"populated": False, "decides": True, "entries": 0, "bytes": 0}
    spill = {"populated": False, "decides": False, "entries": 0, "bytes": 0}
    resident = {"files": 1, "bytes": 100, "resident_bytes": 90, "dropped": False}
    dropped = {"files": 1, "bytes": 100, "resident_bytes": 0, "dropped": True}
    assert caches.state({"a": full, "x": spill}, requested="cold", weights=None) == "warm"
    assert caches.state({"a": empty, "x": spill}, requested="warm", weights=None) == "cold"
    assert caches.state({"a": full, "b": empty}, requested="warm", weights=None) == "mixed"
    assert caches.state({"a": empty}, requested="cold", weights=resident) == "cold-weights-cached"
    assert caches.state({"a": empty}, requested="cold", weights=dropped) == "cold"
    assert caches.state({"x": spill}, requested="warm", weights=None) == "warm"  # nothing decides: as asked


def test_inspect_counts_files_and_bytes_and_empty_keeps_the_directory(tmp_path):
    c = Cache("c", tmp_path / "c")
    assert caches.inspect(c) == {"populated": False, "decides": True, "entries": 0, "bytes": 0}
    (c.path / "a" / "b").mkdir(parents=True)
    (c.path / "a" / "b" / "f").write_bytes(b"x" * 10)
    (c.path / "g").write_bytes(b"y" * 5)
    assert caches.inspect(c) == {"populated": True, "decides": True, "entries": 2, "bytes": 15}
    caches.empty([c])
    assert c.path.is_dir() and caches.inspect(c)["entries"] == 0


def _evictable(path: Path) -> bool:
    """Whether this filesystem drops clean pages on request (tmpfs keeps them: they are the file)."""
    caches.drop_from_page_cache([path])
    return caches.resident_bytes(path) == 0


def test_mincore_residency_follows_reads_and_drops(tmp_path):
    f = tmp_path / "w.safetensors"
    size = 3 * 1024 * 1024 + 123  # a partial last page counts only its bytes
    with open(f, "wb") as out:
        out.write(os.urandom(size))
        out.flush()
        os.fsync(out.fileno())
    if not _evictable(f):
        pytest.skip("this filesystem keeps file pages resident (tmpfs)")
    assert caches.resident_bytes(f) == 0
    with open(f, "rb") as inp:
        inp.read(1024 * 1024)  # the first MiB, plus whatever the kernel reads ahead
    partial = caches.resident_bytes(f)
    assert 1024 * 1024 <= partial <= size
    f.read_bytes()
    assert caches.resident_bytes(f) == size
    caches.drop_from_page_cache([f])
    assert caches.resident_bytes(f) == 0
    (tmp_path / "empty").touch()
    assert caches.resident_bytes(tmp_path / "empty") == 0


def test_cold_start_with_resident_weights_is_labelled_so_unless_perfci_may_drop_them(tmp_path, cache_home):
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    with open(weights, "wb") as out:
        out.write(os.urandom(2 * 1024 * 1024))
        out.flush()
        os.fsync(out.fileno())
    if not _evictable(weights):
        pytest.skip("this filesystem keeps file pages resident (tmpfs)")
    weights.read_bytes()  # the weights are in the page cache, as after any earlier start
    target = runner.resolve_target(engine="sim")
    source = f'source = "{model}"'
    kept = runner.run_suite(suite=suite(tmp_path, '["cold"]', model_extra=source), target=target)
    (start,) = kept.startups
    assert start.cache == "cold-weights-cached"
    assert start.weights.model_dump() == {"files": 1, "bytes": 2 * 1024 * 1024, "resident_bytes": 2 * 1024 * 1024,
                                          "dropped": False}  # fmt: skip
    dropped = runner.run_suite(suite=suite(tmp_path, '["cold"]', model_extra=source,
                                           startup_extra="drop_page_cache = true"), target=target)  # fmt: skip
    (start,) = dropped.startups
    assert start.cache == "cold" and start.weights.dropped and start.weights.resident_bytes == 0
