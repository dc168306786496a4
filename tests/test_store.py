from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlite_utils

from perfci import store
from perfci.errors import RecordError, StoreError
from perfci.metrics import flatten as flatten_metrics
from perfci.store import (
    TABLES,
    ingest,
    ingest_files,
    migrations,
    open_db,
    points_frame,
    rebuild,
    row_counts,
    runs_frame,
)
from perfci.store.records import RunRecord, write_record

SAMPLE_COUNTS = {"runs": 1, "startups": 2, "startup_phases": 6, "points": 2, "requests": 3}


def dump(db) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order: two stores are equal when their dumps are."""
    return {t: sorted(db.execute(f"SELECT * FROM [{t}]").fetchall(), key=repr) for t in TABLES}


def test_open_db_creates_the_schema_in_wal_mode(tmp_path):
    db = open_db(tmp_path / "perfci.db")
    assert set(TABLES) <= set(db.table_names())
    assert db.journal_mode == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert row_counts(db) == dict.fromkeys(TABLES, 0)


def test_migrations_are_idempotent_on_reopen(tmp_path):
    path = tmp_path / "perfci.db"
    open_db(path).close()
    first = [(m.name, m.applied_at) for m in migrations.MIGRATIONS.applied(sqlite_utils.Database(path))]
    schema = sqlite_utils.Database(path).schema
    db = open_db(path)
    assert [(m.name, m.applied_at) for m in migrations.MIGRATIONS.applied(db)] == first
    assert [name for name, _ in first] == migrations.NAMES
    assert db.schema == schema


def test_in_memory_store(record_dict):
    db = open_db(":memory:")
    assert ingest(db, RunRecord.model_validate(record_dict))
    assert row_counts(db) == SAMPLE_COUNTS


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are not the tables you are looking for\n" * 100)
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"notes\.db: not a SQLite database \(file is not a database\)"):
        open_db(path)
    assert path.read_bytes() == before


def test_a_store_migrated_by_a_newer_perfci_is_refused(tmp_path):
    path = tmp_path / "perfci.db"
    open_db(path).close()
    db = sqlite_utils.Database(path)
    db["_sqlite_migrations"].insert({"migration_set": "perfci", "name": "0099_future", "applied_at": "2027"})
    db.close()
    with pytest.raises(StoreError, match=r"perfci\.db: schema is newer than this perfci .*0099_future"):
        open_db(path)


def test_ingest_loads_every_table(tmp_db, record_dict):
    record = RunRecord.model_validate(record_dict)
    assert ingest(tmp_db, record, record_path="records/x.json") is True
    assert row_counts(tmp_db) == SAMPLE_COUNTS
    run = tmp_db["runs"].get(record.run_id)
    assert (run["engine"], run["suite_hash"], run["record_path"]) == ("sim", "0123456789abcdef", "records/x.json")
    assert json.loads(run["engine_argv"])[:3] == ["python", "-m", "perfci.measure.engines.sim"]
    point = tmp_db["points"].get(f"{record.run_id}:0")
    assert (point["load_kind"], point["load_value"], point["load_label"]) == ("concurrency", 4.0, "c=4")
    assert (point["ttft_ms_p50"], point["e2e_ms_max"], point["requests"]) == (12.75, 202.5, 3)
    failed = tmp_db["points"].get(f"{record.run_id}:1")
    assert (failed["status"], failed["error"], failed["ttft_ms_p50"]) == ("failed", "server died", None)


def test_request_rows_carry_tpot_only_where_defined(tmp_db, record_dict):
    record = RunRecord.model_validate(record_dict)
    ingest(tmp_db, record)
    rows = list(tmp_db["requests"].rows_where("run_id = ?", [record.run_id], order_by="idx"))
    assert [r["tpot_ms"] for r in rows] == [10.0, None, None]  # (112.5 - 12.5) / (11 - 1); 1 token; failed
    assert [r["status"] for r in rows] == [200, 200, 500]
    assert json.loads(rows[0]["itl_ms"]) == [10.0] * 10
    assert rows[2]["error"] == "HTTP 500: injected"


def test_each_startup_phase_is_a_queryable_series(tmp_db, make_record_dict):
    for version, weights in (("0.1.0", 1.0), ("0.2.0", 1.7)):
        record = make_record_dict(build={"engine": "sim", "version": version, "commit": None, "source": "builtin"})
        record["startups"][0]["phases"]["weights_loaded"] = weights
        ingest(tmp_db, RunRecord.model_validate(record))
    series = tmp_db.execute(
        "SELECT r.version, p.seconds FROM startup_phases p JOIN startups s ON s.id = p.startup_id "
        "JOIN runs r ON r.run_id = p.run_id WHERE p.phase = 'weights_loaded' AND s.cache = 'cold' "
        "ORDER BY r.version"
    ).fetchall()
    assert series == [("0.1.0", 1.0), ("0.2.0", 1.7)]


def test_ingesting_the_same_run_twice_changes_nothing(tmp_db, record_dict):
    record = RunRecord.model_validate(record_dict)
    assert ingest(tmp_db, record) is True
    before = dump(tmp_db)
    assert ingest(tmp_db, record) is False
    assert dump(tmp_db) == before


def test_metrics_outside_the_vocabulary_go_to_extra_metrics_never_to_new_columns(tmp_db, make_record_dict):
    old = RunRecord.model_validate(make_record_dict())
    new = make_record_dict()
    new["points"][0]["metrics"] |= {"ttfb_ms": {"p50": 3.5, "p99": 7}, "queue_depth_max": 9, "note": "hot",
                                    "Status": "fine", "extra_metrics": 1}  # fmt: skip
    new = RunRecord.model_validate(new)
    schema = tmp_db["points"].schema
    ingest(tmp_db, old)
    ingest(tmp_db, new)
    assert tmp_db["points"].schema == schema  # no ALTER TABLE from record content
    point = tmp_db["points"].get(f"{new.run_id}:0")
    # errors_by_kind's kinds are open-ended (http_3xx, ...), so they are kept in extra_metrics too
    assert json.loads(point["extra_metrics"]) == {"ttfb_ms_p50": 3.5, "ttfb_ms_p99": 7, "queue_depth_max": 9,
                                                  "note": "hot", "Status": "fine", "extra_metrics": 1,
                                                  "errors_by_kind_http_5xx": 1}  # fmt: skip
    assert (point["status"], point["ttft_ms_p50"]) == ("ok", 12.75)  # the known ones, in their typed columns
    assert json.loads(tmp_db["points"].get(f"{old.run_id}:0")["extra_metrics"]) == {"errors_by_kind_http_5xx": 1}


def test_flatten_metrics():
    assert flatten_metrics({"ttft_ms": {"p50": 1.0, "p99": None}, "requests": 3, "hist": [1, 2]}) == {
        "ttft_ms_p50": 1.0,
        "ttft_ms_p99": None,
        "requests": 3,
        "hist": "[1, 2]",
    }
    with pytest.raises(RecordError, match="'ttft_ms_p50' appears twice"):
        flatten_metrics({"ttft_ms": {"p50": 1.0}, "ttft_ms_p50": 2.0})


def test_a_failure_mid_ingest_rolls_the_whole_record_back(tmp_db, record_dict):
    # The last table written refuses its rows, after runs, startups and points have gone in.
    tmp_db.execute("CREATE TRIGGER refuse BEFORE INSERT ON requests BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    with pytest.raises(StoreError, match=r"perfci\.db: disk on fire"):
        ingest(tmp_db, RunRecord.model_validate(record_dict))
    assert row_counts(tmp_db) == dict.fromkeys(TABLES, 0)
    tmp_db.execute("DROP TRIGGER refuse")
    assert ingest(tmp_db, RunRecord.model_validate(record_dict)) is True


def test_concurrent_writers_on_a_fresh_store(tmp_path, make_record_dict):
    """Several processes' worth of connections migrate one new file and ingest at once (WAL + busy wait)."""
    path = tmp_path / "perfci.db"
    shared = RunRecord.model_validate(make_record_dict())
    own = [RunRecord.model_validate(make_record_dict()) for _ in range(4)]

    def worker(record):
        db = open_db(path)
        try:
            return ingest(db, shared), ingest(db, record)
        finally:
            db.close()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, own))
    assert sorted(first for first, _ in results) == [False, False, False, True]
    assert all(second for _, second in results)
    db = open_db(path)
    assert row_counts(db) == {table: n * 5 for table, n in SAMPLE_COUNTS.items()}
    assert [m.name for m in migrations.MIGRATIONS.applied(db)] == migrations.NAMES


@pytest.fixture
def records_dir(tmp_path, make_record_dict):
    """Three good records (one in a subfolder), a copy of one of them, and four files that must be refused."""
    d = tmp_path / "records"
    (d / "2026" / "11").mkdir(parents=True)
    good = [RunRecord.model_validate(make_record_dict()) for _ in range(3)]
    write_record(good[0], d)
    write_record(good[1], d)
    write_record(good[2], d / "2026" / "11")
    (d / "copy.json").write_bytes((d / f"{good[0].run_id}.json").read_bytes())
    text = (d / f"{good[1].run_id}.json").read_text()
    (d / "truncated.json").write_text(text[:-200])
    (d / "future.json").write_text(json.dumps(make_record_dict(schema_version=99)))
    (d / "foreign.json").write_text('{"foo": 1}')
    mismatched = make_record_dict()
    mismatched["points"][0]["requests"]["e2e_ms"].pop()
    (d / "mismatched.json").write_text(json.dumps(mismatched))
    (d / "notes.txt").write_text("not a record, not *.json")
    return d


def test_ingest_files_loads_the_good_and_refuses_the_bad(tmp_db, records_dir):
    paths = sorted(records_dir.rglob("*.json"))
    report = ingest_files(tmp_db, paths)
    assert report.counts == {"ingested": 3, "already_present": 1, "refused": 4}
    refused = {path.name: reason for path, reason in report.refused}
    assert set(refused) == {"truncated.json", "future.json", "foreign.json", "mismatched.json"}
    assert all(reason.startswith(str(records_dir / name)) for name, reason in refused.items())
    assert row_counts(tmp_db)["runs"] == 3
    stored = {r["record_path"] for r in tmp_db["runs"].rows}
    assert {p for p in map(str, report.ingested)} == stored

    again = ingest_files(tmp_db, paths)
    assert again.counts == {"ingested": 0, "already_present": 4, "refused": 4}
    assert json.loads(json.dumps(again.as_dict()))["refused"][0] == {
        "path": str(again.refused[0][0]),
        "error": again.refused[0][1],
    }
    assert again.summary() == "\n".join(["0 ingested, 4 already present, 4 refused", *(r for _, r in again.refused)])


def test_rebuild_equals_ingesting_the_files(tmp_path, records_dir):
    expected_db = open_db(tmp_path / "ingested.db")
    expected_report = ingest_files(expected_db, sorted(records_dir.rglob("*.json")))

    # The DB being replaced, as a crashed writer left it: a run no record backs, still only in its WAL.
    stale = open_db(tmp_path / "stale.db")
    stale.execute("PRAGMA wal_autocheckpoint = 0")
    stale["runs"].insert(
        {
            "run_id": "gone",
            "created": "x",
            "perfci_version": "0",
            "suite": "s",
            "suite_hash": "0",
            "engine": "e",
            "source": "s",
            "hardware_label": "h",
            "status": "ok",
        }
    )
    target = tmp_path / "out" / "perfci.db"
    target.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(f"{tmp_path / 'stale.db'}{suffix}", f"{target}{suffix}")
    stale.close()

    report = rebuild(target, records_dir, allow_partial=True)
    assert report == expected_report
    assert os.listdir(target.parent) == ["perfci.db"]  # no temp file, no stale WAL sidecars
    rebuilt = open_db(target)
    assert dump(rebuilt) == dump(expected_db)


def test_rebuild_of_a_missing_directory_leaves_the_db_alone(tmp_path, tmp_db, record_dict):
    ingest(tmp_db, RunRecord.model_validate(record_dict))
    with pytest.raises(StoreError, match="not a directory"):
        rebuild(tmp_path / "perfci.db", tmp_path / "nowhere")
    assert row_counts(tmp_db) == SAMPLE_COUNTS
    assert sorted(os.listdir(tmp_path)) == ["perfci.db", "perfci.db-shm", "perfci.db-wal"]


def test_frames(tmp_db, make_record_dict):
    older = RunRecord.model_validate(make_record_dict(created="2026-11-01T00:00:00.000Z"))
    newer = RunRecord.model_validate(make_record_dict(created="2026-11-20T00:00:00.000Z"))
    ingest(tmp_db, older)
    ingest(tmp_db, newer)
    assert list(runs_frame(tmp_db)["run_id"]) == [newer.run_id, older.run_id]
    assert list(runs_frame(tmp_db, limit=1)["run_id"]) == [newer.run_id]

    points = points_frame(tmp_db)
    assert list(points["run_id"]) == [older.run_id, older.run_id, newer.run_id, newer.run_id]
    assert {"engine", "version", "hardware_label", "suite", "ttft_ms_p99", "load_label"} <= set(points.columns)
    mine = points_frame(tmp_db, run_id=newer.run_id)
    assert list(mine["idx"]) == [0, 1]
    assert mine["ttft_ms_p50"].iloc[0] == 12.75


def test_a_store_of_v1_records_gets_error_kinds_and_v2_statuses(tmp_path, record_dict):
    """Migration 0005 gives rows stored from v1 records what reading those records now gives."""
    db = sqlite_utils.Database(tmp_path / "old.db")
    migrations.MIGRATIONS.apply(db, stop_before="0006_error_kinds")
    point_id = f"{record_dict['run_id']}:0"
    db["runs"].insert({"run_id": record_dict["run_id"], "created": "2026-11-26T23:40:00.123Z", "perfci_version": "0.1",
                       "suite": "smoke", "suite_hash": "0123abcd", "engine": "sim", "source": "builtin",
                       "hardware_label": "cpu-2c", "status": "partial"})  # fmt: skip
    db["points"].insert({"point_id": point_id, "run_id": record_dict["run_id"], "idx": 0, "model": "m",
                         "workload": "w", "load_kind": "concurrency", "load_label": "c=4", "repeat": 0,
                         "status": "ok", "started": "2026-11-26T23:40:03.000Z", "errors": 1,
                         "error_rate": 1 / 3})  # fmt: skip
    db["requests"].insert_all([
        {"point_id": point_id, "idx": i, "run_id": record_dict["run_id"], "error": error}
        for i, error in enumerate([None, "timeout after 60s", "HTTP 502: bad gateway"])
    ])  # fmt: skip
    db.close()

    db = open_db(tmp_path / "old.db")
    kinds = [row[0] for row in db.execute("SELECT error_kind FROM requests ORDER BY idx")]
    assert kinds == [None, "timeout", "http_5xx"]
    assert db.execute("SELECT status FROM points").fetchone()[0] == "degraded"
    assert db.execute("SELECT status FROM runs").fetchone()[0] == "degraded"
    db.close()


def test_startups_store_the_measured_state_and_rows_from_before_it_read_as_not_measured(tmp_path, record_dict):
    db = sqlite_utils.Database(tmp_path / "old.db")
    migrations.MIGRATIONS.apply(db, stop_before="0009_startup_caches")
    db["runs"].insert({"run_id": "old", "created": "2026-11-26T23:40:00.123Z", "perfci_version": "0.1",
                       "suite": "smoke", "suite_hash": "0123abcd", "engine": "sim", "source": "builtin",
                       "hardware_label": "cpu-2c", "status": "ok"})  # fmt: skip
    db["startups"].insert({"id": "old:0", "run_id": "old", "idx": 0, "model": "m", "cache": "warm", "ready": True})
    db.close()

    db = open_db(tmp_path / "old.db")
    store.ingest(db, RunRecord.model_validate(record_dict))
    rows = db.execute("SELECT run_id, cache, requested, caches, weights_bytes, weights_resident_bytes FROM startups "
                      "ORDER BY run_id, idx").fetchall()  # fmt: skip
    assert rows[-1] == ("old", "warm", None, None, None, None)
    cold, warm = rows[:2]
    assert cold[1:3] == ("cold", "cold") and json.loads(cold[3])["vllm-compile"]["populated"] is False
    assert cold[4:] == (4096, 0) and warm[1:3] == ("warm", "warm") and warm[4:] == (None, None)
    db.close()
