"""`perfci data push/pull`: the append-only data location and the store rebuilt or updated from it."""

import json
import sqlite3
import subprocess
import sys

from click.testing import CliRunner

from perfci.cli.main import cli
from perfci.ops import data
from perfci.store import open_db, row_counts


def write_records(tmp_path, make_record_dict, n, prefix="r"):
    paths = []
    for i in range(n):
        record = make_record_dict(created=f"2026-1{i % 2 + 1}-0{i + 1}T10:00:00.000Z")
        path = tmp_path / f"{prefix}{i}.json"
        path.write_text(json.dumps(record))
        paths.append(path)
    return paths


def test_push_is_append_only_and_snapshots_the_store(tmp_path, make_record_dict):
    files = write_records(tmp_path, make_record_dict, 3)
    loc = tmp_path / "data"
    first = data.push(loc, files)
    assert len(first.added) == 3 and first.refused == []
    run_id = json.loads(files[0].read_text())["run_id"]
    assert (loc / "records" / "2026" / "11" / f"{run_id}.json").read_bytes() == files[0].read_bytes()
    again = data.push(loc, files)
    assert again.added == [] and len(again.already_there) == 3

    changed = json.loads(files[0].read_text()) | {"status": "ok"}
    (tmp_path / "changed.json").write_text(json.dumps(changed))
    (tmp_path / "junk.json").write_text("{not json")
    refused = data.push(loc, [tmp_path / "changed.json", tmp_path / "junk.json"])
    assert [p for p, _ in refused.refused] == [str(tmp_path / "changed.json"), str(tmp_path / "junk.json")]
    assert "never changed" in refused.refused[0][1]
    assert (loc / "records" / "2026" / "11" / f"{run_id}.json").read_bytes() == files[0].read_bytes()

    db = open_db(tmp_path / "p.db")  # WAL mode, open while snapshotting
    db["watched_builds"].insert({"build": "vllm==0.33.0", "package": "vllm", "source": "vllm:pypi", "prerelease": 0,
                                 "yanked": 0, "first_seen": "t", "last_seen": "t"})
    pushed = data.push(loc, [], db_path=tmp_path / "p.db")
    assert pushed.snapshot == "perfci.db"
    copy = sqlite3.connect(loc / "perfci.db")
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert copy.execute("SELECT build FROM watched_builds").fetchall() == [("vllm==0.33.0",)]
    assert not (loc / "perfci.db-wal").exists()
    db.close()


def test_pull_starts_from_the_snapshot_then_ingests_only_missing_records(tmp_path, make_record_dict):
    loc = tmp_path / "data"
    early = write_records(tmp_path, make_record_dict, 2, prefix="early")
    db = open_db(tmp_path / "ci.db")
    data.push(loc, early)
    assert data.pull(loc, tmp_path / "ci.db").counts["ingested"] == 2
    db["watched_builds"].insert({"build": "sglang==0.5.23", "package": "sglang", "source": "s", "prerelease": 0,
                                 "yanked": 0, "first_seen": "t", "last_seen": "t"})
    db.close()
    data.push(loc, write_records(tmp_path, make_record_dict, 1, prefix="late"), db_path=tmp_path / "ci.db")

    fresh = tmp_path / "elsewhere" / "p.db"
    report = data.pull(loc, fresh)
    assert report.counts == {"ingested": 1, "already_present": 0, "refused": 0}  # the 2 early ones: in the snapshot
    pulled = open_db(fresh)
    assert pulled["runs"].count == 3 and pulled["watched_builds"].count == 1
    assert data.pull(loc, fresh).counts["ingested"] == 0

    # The records alone rebuild the same runs (findings and watch state live in the snapshot only).
    rebuilt = CliRunner().invoke(cli, ["db", "rebuild", str(loc / "records"), "--db", str(tmp_path / "r.db")])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert row_counts(open_db(tmp_path / "r.db")) == row_counts(pulled)


def test_two_pushes_and_ingests_at_once_store_each_record_once(tmp_path, make_record_dict):
    files = [str(p) for p in write_records(tmp_path, make_record_dict, 4)]
    loc, db = str(tmp_path / "data"), str(tmp_path / "p.db")
    commands = [("data", "push", *files, "--data", loc)] * 2 + [("ingest", *files, "--db", db)] * 2
    procs = [subprocess.Popen([sys.executable, "-m", "perfci", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in commands]  # fmt: skip
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert len(list((tmp_path / "data" / "records").rglob("*.json"))) == 4
    assert open_db(db)["runs"].count == 4


def test_cli_push_refuses_with_exit_2_and_pull_json(tmp_path, make_record_dict):
    (good,) = write_records(tmp_path, make_record_dict, 1)
    (tmp_path / "bad.json").write_text("[]")
    loc = tmp_path / "data"
    pushed = CliRunner().invoke(cli, ["data", "push", str(good), str(tmp_path / "bad.json"), "--data", str(loc)])
    assert pushed.exit_code == 2 and "1 added, 0 already there, 1 refused" in pushed.output
    pulled = CliRunner().invoke(cli, ["data", "pull", "--data", str(loc), "--db", str(tmp_path / "p.db"), "--json"])
    assert pulled.exit_code == 0 and json.loads(pulled.output)["counts"]["ingested"] == 1
    missing = CliRunner().invoke(cli, ["data", "pull", "--data", str(tmp_path / "nope"), "--db", str(tmp_path / "p.db")])
    assert missing.exit_code == 2 and "no data location there" in " ".join(missing.output.split())
