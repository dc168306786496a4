"""The store against bad input and bad files: refused records never cost stored runs, record content never
changes the schema, every SQLite failure is a StoreError naming the file, readers never create or migrate,
and the dashboard publishes only files from the records folder."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from perfci import store
from perfci.cli.main import cli
from perfci.errors import RecordError, StoreError
from perfci.measure.aggregate import summarize
from perfci.metrics import VOCABULARY, flatten
from perfci.report import dashboard
from perfci.store import ingest, ingest_files, migrations, open_db, rebuild, records, row_counts
from perfci.store.records import RunRecord, read_record, write_record

from .test_metrics import sample

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def said(result, text: str) -> bool:
    """`text` is in the output, whatever the line breaks (rich wraps long lines, even inside a path)."""
    return "".join(text.split()) in "".join(result.output.split())


def sidecars(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name and p.name.startswith(path.name))


@pytest.fixture
def store_with_runs(tmp_path, make_record_dict) -> tuple[Path, Path]:
    """A records folder of two good records and the store rebuilt from it (closed: no WAL beside it)."""
    runs = tmp_path / "runs"
    for _ in range(2):
        write_record(RunRecord.model_validate(make_record_dict()), runs)
    db_path = tmp_path / "perfci.db"
    rebuild(db_path, runs)
    return db_path, runs


# --- rebuild ----------------------------------------------------------------------------------------------


def test_rebuild_keeps_the_old_store_byte_for_byte_when_a_record_is_refused(store_with_runs, make_record_dict):
    db_path, runs = store_with_runs
    write_record(RunRecord.model_validate(make_record_dict()), runs)  # a new good one: would be ingested
    (runs / "broken.json").write_text('{"kind": "perfci-run"')
    (runs / "foreign.json").write_text('{"foo": 1}')
    before = db_path.read_bytes()
    result = invoke("db", "rebuild", str(runs), "--db", str(db_path))
    assert result.exit_code == 2
    assert said(result, f"{db_path}: not replaced: 2 run record file(s)")
    assert said(result, f"{runs / 'broken.json'}: not valid JSON") and said(result, f"{runs / 'foreign.json'}: not a")
    assert db_path.read_bytes() == before
    assert sorted(os.listdir(db_path.parent)) == ["perfci.db", "runs"]  # no temp file, no WAL left


def test_rebuild_allow_partial_replaces_the_store_and_names_what_was_left_out(store_with_runs, make_record_dict):
    db_path, runs = store_with_runs
    write_record(RunRecord.model_validate(make_record_dict()), runs)
    (runs / "broken.json").write_text("{")
    result = invoke("db", "rebuild", str(runs), "--db", str(db_path), "--allow-partial")
    assert result.exit_code == 0, result.output
    assert said(result, "3 ingested, 0 already present, 1 refused")
    assert said(result, f"{runs / 'broken.json'}: not valid JSON") and said(result, f"left out of {db_path}")
    assert row_counts(open_db(db_path, readonly=True))["runs"] == 3


def test_temp_files_of_a_killed_rebuild_are_removed_by_the_next(store_with_runs):
    db_path, runs = store_with_runs
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    token = "0" * 32
    left = db_path.with_name(store.REBUILD_TMP.format(name=db_path.name, pid=dead_pid, token=token))
    live = db_path.with_name(store.REBUILD_TMP.format(name=db_path.name, pid=os.getppid(), token=token))
    other = db_path.with_name(store.REBUILD_TMP.format(name="other.db", pid=dead_pid, token=token))
    sqlite3.connect(left).execute("CREATE TABLE half_built (x)").connection.close()
    for path in (Path(f"{left}-wal"), Path(f"{left}-shm"), live, other):
        path.write_bytes(b"leftover")
    rebuild(db_path, runs)
    assert sorted(os.listdir(db_path.parent)) == sorted(["perfci.db", "runs", live.name, other.name])


KILLED_REBUILD = """
import sys, time
from perfci import store
real = store.ingest_files
def slow(db, paths):
    print("building", flush=True)
    time.sleep(60)  # killed here, mid-way: the temp store exists, the old one is not replaced yet
    return real(db, paths)
store.ingest_files = slow
store.rebuild(sys.argv[1], sys.argv[2])
"""


def test_a_rebuild_killed_with_sigkill_leaves_the_old_store_intact(store_with_runs):
    db_path, runs = store_with_runs
    before = db_path.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_REBUILD, str(db_path), str(runs)], env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline() == "building\n"
    temp = [name for name in os.listdir(db_path.parent) if ".rebuild-" in name]
    assert temp and all(name.startswith(f".perfci.db.rebuild-{proc.pid}-") for name in temp)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert db_path.read_bytes() == before
    assert row_counts(open_db(db_path, readonly=True))["runs"] == 2
    rebuild(db_path, runs)  # the next rebuild removes what the killed one left
    assert sorted(os.listdir(db_path.parent)) == ["perfci.db", "runs"]


def test_rebuild_carries_findings_over_from_a_store_of_an_older_schema(tmp_path, make_record_dict):
    runs = tmp_path / "runs"
    write_record(RunRecord.model_validate(make_record_dict()), runs)
    db_path = tmp_path / "perfci.db"
    old = sqlite_utils.Database(db_path)
    migrations.MIGRATIONS.apply(old, stop_before="0003_bisects")
    old["regressions"].insert({"id": 7, "engine": "sim", "hardware_label": "h", "suite": "s", "first_bad": "b",
                               "members": 0, "confirmed": False, "status": "acknowledged", "why": "expected",
                               "first_seen": "t", "last_seen": "t"})  # fmt: skip
    old.close()
    rebuild(db_path, runs)
    db = open_db(db_path, readonly=True)
    assert [(r["id"], r["status"], r["why"]) for r in db["regressions"].rows] == [(7, "acknowledged", "expected")]
    assert row_counts(db)["runs"] == 1


def test_rebuild_over_an_empty_file_makes_the_store(tmp_path, record_dict):
    runs = tmp_path / "runs"
    write_record(RunRecord.model_validate(record_dict), runs)
    (tmp_path / "perfci.db").touch()
    rebuild(tmp_path / "perfci.db", runs)
    assert row_counts(open_db(tmp_path / "perfci.db", readonly=True))["runs"] == 1


# --- metrics: the vocabulary, one JSON column, a migration ---------------------------------------------------


def test_the_vocabulary_is_what_summarize_returns_and_the_typed_columns_of_points(tmp_db):
    from perfci.config import Slo

    metrics = summarize([sample(0, [100, 110])], started_ns=0, ended_ns=10**9, slo=Slo(ttft_ms=200))
    assert set(flatten(metrics)) == set(VOCABULARY)
    types = {c.name: c.type for c in tmp_db["points"].columns}
    sql = {int: "INTEGER", float: "REAL", bool: "INTEGER"}
    assert {name: types[name] for name in VOCABULARY} == {name: sql[kind] for name, kind in VOCABULARY.items()}


@pytest.mark.parametrize(("key", "value"), [("requests", 2.5), ("ttft_ms", {"p50": "fast"}), ("slo_met", 1),
                                            ("completed", True)])  # fmt: skip
def test_a_known_metric_of_the_wrong_type_is_refused(tmp_db, record_dict, key, value):
    record_dict["points"][0]["metrics"][key] = value
    with pytest.raises(RecordError, match=r"point 0: metric '(requests|ttft_ms_p50|slo_met|completed)' must be"):
        ingest(tmp_db, RunRecord.model_validate(record_dict))
    assert row_counts(tmp_db)["runs"] == 0


def test_a_record_with_thousands_of_metric_keys_is_refused_and_the_files_after_it_go_in(tmp_path, tmp_db,
                                                                                        make_record_dict):  # fmt: skip
    folder = tmp_path / "in"
    folder.mkdir()
    huge = make_record_dict()
    huge["points"][0]["metrics"] |= {f"m{i}": i for i in range(2100)}
    (folder / "a-huge.json").write_text(json.dumps(huge))
    after = write_record(RunRecord.model_validate(make_record_dict()), folder / "b-after.json")
    schema = tmp_db["points"].schema
    report = ingest_files(tmp_db, sorted(folder.iterdir()))
    assert report.ingested == [after]
    (path, error), = report.refused
    assert path.name == "a-huge.json" and error.startswith(str(path))
    keys = len(flatten(huge["points"][0]["metrics"]))
    assert keys > 2100 and f"{keys} metric keys once flattened; at most 256 are allowed (records.MAX_METRIC_KEYS)" in error
    assert tmp_db["points"].schema == schema


def test_bounds_on_size_points_and_strings_name_the_file_and_the_bound(tmp_path, record_dict, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record_dict))
    monkeypatch.setattr(records, "MAX_RECORD_BYTES", path.stat().st_size - 1)
    with pytest.raises(RecordError, match=rf"r\.json: larger than {path.stat().st_size - 1} bytes, the bound"):
        read_record(path)
    monkeypatch.undo()

    many = record_dict | {"points": [record_dict["points"][1] | {"index": i} for i in range(records.MAX_POINTS + 1)]}
    path.write_text(json.dumps(many))
    with pytest.raises(RecordError, match=r"r\.json: invalid run record\n  points: List should have at most 10000"):
        read_record(path)

    long = record_dict | {"suite": record_dict["suite"] | {"name": "s" * (records.MAX_NAME_CHARS + 1)}}
    path.write_text(json.dumps(long))
    with pytest.raises(RecordError, match=r"suite\.name: Value error, 1025 characters, over the bound of 1024 "
                                          r"\(records\.MAX_NAME_CHARS\)"):  # fmt: skip
        read_record(path)


def test_migration_0005_moves_ad_hoc_metric_columns_into_extra_metrics(tmp_path, make_record_dict):
    """A store from before 0005, where ingest added a column per new metric key, keeps those values."""
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrations.MIGRATIONS.apply(old, stop_before="0005_extra_metrics")
    record = RunRecord.model_validate(make_record_dict())
    rows = store._rows(record, None)
    for row in rows["points"]:  # the columns of later migrations
        row.pop("extra_metrics")
        row.pop("skipped")
    for row in rows["requests"]:
        row.pop("error_kind")
    for row in rows["startups"]:
        for column in ("requested", "caches", "weights_bytes", "weights_resident_bytes"):
            row.pop(column)
    rows["runs"][0].pop("kernels")
    rows["points"][0] |= {"ttfb_ms_p50": 3.5, "note": "hot"}
    rows["points"][1] |= {"ttfb_ms_p50": None, "note": None}
    old["points"].add_column("ttfb_ms_p50", float)
    old["points"].add_column("note", str)
    for table, table_rows in rows.items():
        old[table].insert_all(table_rows)
    old.close()

    assert "0005_extra_metrics" in str(pytest.raises(StoreError, open_db, path, readonly=True).value)
    db = open_db(path)  # a writer migrates
    columns = {c.name for c in db["points"].columns}
    assert "extra_metrics" in columns and not {"ttfb_ms_p50", "note"} & columns
    extra = dict(db.execute("SELECT idx, extra_metrics FROM points ORDER BY idx").fetchall())
    assert json.loads(extra[0]) == {"ttfb_ms_p50": 3.5, "note": "hot"} and extra[1] is None
    frame = store.points_frame(db)
    assert frame["ttft_ms_p50"].iloc[0] == 12.75  # readers of the typed columns are unaffected
    from perfci.verdicts import series

    assert not series.observations(db).empty


# --- SQLite errors ------------------------------------------------------------------------------------------


def test_a_store_with_corrupted_pages_is_a_store_error_naming_the_file(store_with_runs):
    db_path, _ = store_with_runs
    data = bytearray(db_path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    for start in range(2 * page, len(data), page):  # every page but the header's and the schema's
        data[start : start + page] = os.urandom(page)
    db_path.write_bytes(bytes(data))
    for args in (["show"], ["ingest", str(db_path.parent / "runs")], ["dashboard", "--out", str(db_path.parent / "s")]):
        result = invoke(*args, "--db", str(db_path))
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert said(result, f"{db_path}: the store is corrupt"), args


def test_a_read_only_store_is_a_store_error_for_writers_and_readable_for_readers(store_with_runs, record_dict):
    db_path, runs = store_with_runs
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(db_path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"running as root, and chattr +i is not possible here: {done.stderr!r}")
        undo = ["chattr", "-i", str(db_path)]
    else:
        db_path.chmod(0o444)
        undo = ["chmod", "644", str(db_path)]
    try:
        path = write_record(RunRecord.model_validate(record_dict), db_path.parent / "new")
        result = invoke("ingest", str(path), "--db", str(db_path))
        assert result.exit_code == 2, result.output
        assert said(result, f"{db_path}: cannot write to the store (attempt to write a readonly database)")
        shown = invoke("show", "--db", str(db_path), "--json")
        assert shown.exit_code == 0 and len(json.loads(shown.output)) == 2
    finally:
        subprocess.run(undo, check=True)


def test_a_store_locked_beyond_the_busy_timeout_is_a_store_error(store_with_runs, record_dict, monkeypatch):
    db_path, _ = store_with_runs
    monkeypatch.setattr(store, "BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(db_path)
    holder.execute("BEGIN IMMEDIATE")
    try:
        db = open_db(db_path)
        with pytest.raises(StoreError, match=rf"{db_path}: the store is locked by another process \(waited 0.2 s\)"):
            ingest(db, RunRecord.model_validate(record_dict))
    finally:
        holder.rollback()
        holder.close()
    assert ingest(db, RunRecord.model_validate(record_dict)) is True


def test_a_directory_or_a_file_that_is_not_sqlite_is_refused(tmp_path):
    with pytest.raises(StoreError, match=r"is a directory, not a perfci store file"):
        open_db(tmp_path)
    text = tmp_path / "notes.db"
    text.write_text("not a database\n" * 500)
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"notes\.db: not a SQLite database"):
            open_db(text, readonly=readonly)
    assert sorted(os.listdir(tmp_path)) == ["notes.db"]
    result = invoke("show", "--db", str(text))
    assert result.exit_code == 2 and said(result, "notes.db: not a SQLite database")


# --- readers never create or migrate ------------------------------------------------------------------------

READERS = (["show"], ["compare", "a", "b"], ["regressions"], ["report"], ["bisect", "status", "1"],
           ["bisect", "list"], ["dashboard", "--out", "site"], ["detect"], ["ack", "1", "--why", "x"])  # fmt: skip


@pytest.mark.parametrize("args", READERS, ids=lambda a: " ".join(a[:2]))
def test_a_missing_store_is_not_created_by_a_reader(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = invoke(*args, "--db", "typo.db")
    assert result.exit_code == 2, result.output
    if args[0] != "dashboard":  # click refuses first: --db must exist
        assert said(result, "no store at typo.db (run `perfci run` or `perfci db rebuild` to make one)")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args", [*READERS, ["ingest", "x.json"], ["db", "rebuild", "."], ["watch"]],
                         ids=lambda a: " ".join(a[:2]))  # fmt: skip
def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    foreign = sqlite3.connect("theirs.db")
    foreign.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
    foreign.execute("INSERT INTO accounts (owner) VALUES ('someone')")
    foreign.commit()
    foreign.close()
    before = Path("theirs.db").read_bytes()
    result = invoke(*args, "--db", "theirs.db")
    assert result.exit_code == 2, result.output
    assert said(result, "theirs.db: a SQLite database but not a perfci store")
    assert Path("theirs.db").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["theirs.db"]  # no WAL, no shm, no site


def test_readers_do_not_migrate_an_older_store_and_writers_do(tmp_path, record_dict):
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrations.MIGRATIONS.apply(old, stop_before="0004_watch")
    old.close()
    before = path.read_bytes()
    result = invoke("show", "--db", str(path))
    assert result.exit_code == 2
    pending = ", ".join(migrations.NAMES[migrations.NAMES.index("0004_watch"):])
    assert pending.startswith("0004_watch, 0005_extra_metrics, ")
    assert said(result, f"made by an older perfci (migrations {pending} are pending)")
    assert path.read_bytes() == before and sidecars(path) == []
    record = write_record(RunRecord.model_validate(record_dict), tmp_path / "r.json")
    assert invoke("ingest", str(record), "--db", str(path)).exit_code == 0
    assert invoke("show", "--db", str(path)).exit_code == 0


def test_a_reader_cannot_write_through_its_connection(tmp_db, tmp_path):
    reader = open_db(tmp_path / "perfci.db", readonly=True)
    with pytest.raises(StoreError, match=r"perfci\.db: cannot write to the store"):
        reader.execute("DELETE FROM runs")


# --- the dashboard publishes records from the records folder only --------------------------------------------


def test_the_dashboard_never_copies_a_file_the_store_names_outside_the_records_folder(tmp_path, make_record_dict):
    records_dir = tmp_path / "runs"
    honest = RunRecord.model_validate(make_record_dict())
    write_record(honest, records_dir)
    liar = RunRecord.model_validate(make_record_dict())
    linked = RunRecord.model_validate(make_record_dict())
    (records_dir / f"{linked.run_id}.json").symlink_to("/etc/passwd")  # inside the folder, pointing out of it
    db_path = tmp_path / "perfci.db"
    db = open_db(db_path)
    ingest(db, honest, record_path=str(records_dir / f"{honest.run_id}.json"))
    ingest(db, liar, record_path="/etc/passwd")
    ingest(db, linked, record_path=str(records_dir / f"{linked.run_id}.json"))
    db.close()

    result = invoke("dashboard", "--db", str(db_path), "--out", str(tmp_path / "site"))
    assert result.exit_code == 0, result.output
    site = tmp_path / "site"
    passwd = Path("/etc/passwd").read_bytes()
    assert not [p for p in site.rglob("*") if p.is_file() and p.read_bytes() == passwd]
    copied = sorted(p.name for p in (site / "runs").glob("*.json"))
    assert copied == [f"{honest.run_id}.json"]
    assert (site / "runs" / f"{honest.run_id}.json").read_bytes() == (records_dir / f"{honest.run_id}.json").read_bytes()


def test_a_run_id_the_store_was_given_by_hand_names_no_file_outside_the_site(tmp_path, record_dict):
    db_path = tmp_path / "perfci.db"
    db = open_db(db_path)
    ingest(db, RunRecord.model_validate(record_dict))
    db.close()
    raw = sqlite3.connect(db_path)  # foreign keys off: rename the run everywhere, as a hand edit could
    for table in ("runs", "startups", "startup_phases", "points", "requests"):
        raw.execute(f"UPDATE {table} SET run_id = '../../escaped'")
    raw.commit()
    raw.close()
    (tmp_path / "deep" / "er").mkdir(parents=True)
    built = dashboard.build_site(open_db(db_path, readonly=True), tmp_path / "deep" / "er" / "site",
                                 costs=dashboard.load_costs(), records_dir=tmp_path)  # fmt: skip
    assert "run '../../escaped': not a run id (a store edited by hand?); no page" in built.notes
    assert not list(tmp_path.rglob("escaped*"))


def test_record_file_finds_runs_and_data_layouts_and_nothing_outside(tmp_path, record_dict):
    record = RunRecord.model_validate(record_dict)
    data = tmp_path / "data" / "records"
    path = write_record(record, data / "2026" / "11")
    assert dashboard.record_file(data, record.run_id, record.created) == path.resolve()
    assert dashboard.record_file(data, record.run_id, "../../x") is None  # not in YYYY/MM: not found
    assert dashboard.record_file(data, "../../etc/passwd", record.created) is None
    assert dashboard.record_file(data, record.run_id, record.created[:0], "/etc/passwd") is None
    renamed = write_record(record, data / "named.json")
    assert dashboard.record_file(data, record.run_id, "", str(renamed)) == renamed.resolve()
    assert dashboard.default_records_dir(tmp_path / "data" / "perfci.db") == data
    (tmp_path / "data" / "runs").mkdir()
    assert dashboard.default_records_dir(tmp_path / "data" / "perfci.db") == tmp_path / "data" / "runs"


def test_a_data_push_of_a_foreign_file_as_the_store_is_refused(tmp_path, record_dict):
    foreign = tmp_path / "theirs.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    result = invoke("data", "push", "--data", str(tmp_path / "data"), "--db", str(foreign))
    assert result.exit_code == 2
    assert said(result, "theirs.db: a SQLite database but not a perfci store")
    assert not (tmp_path / "data" / "perfci.db").exists()
