"""Results of other load generators as perfci run records (`perfci ingest --format`, docs/import.md).

One module per format, each with NAME, TOOL, `detect(data) -> bool` (by content) and
`read(data, path) -> Imported`; `common.to_record` turns an `Imported` into a run record. What the source did
not measure stays absent from the record, the source tool and its version are kept under
`environment.imported`, and anything that cannot be mapped is a RecordError naming the file and the key.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import ModuleType

from sqlite_utils import Database

from perfci import store
from perfci.errors import RecordError
from perfci.store.imports import aiperf, guidellm, vllm_bench
from perfci.store.imports.common import Imported, to_record
from perfci.store.records import MAX_RECORD_BYTES, RunRecord, read_record, write_record

FORMATS: dict[str, ModuleType] = {m.NAME: m for m in (vllm_bench, guidellm, aiperf)}
PERFCI = "perfci"  # perfci's own run records
AUTO = "auto"
CHOICES = (AUTO, PERFCI, *FORMATS)

__all__ = ["AUTO", "CHOICES", "FORMATS", "PERFCI", "Imported", "detect", "ingest_files", "load", "read_foreign"]


def detect(data: object) -> str | None:
    """The format a parsed JSON document is in: "perfci", a name of FORMATS, or None."""
    if isinstance(data, dict) and data.get("kind") == "perfci-run":
        return PERFCI
    return next((name for name, module in FORMATS.items() if module.detect(data)), None)


def read_foreign(path: Path, fmt: str = AUTO) -> tuple[str, Imported, bytes]:
    """(format, what it says, the file's bytes) for a foreign result file; `fmt` AUTO detects it."""
    raw = _read(path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise RecordError(f"{path}: not valid JSON ({e})") from e
    found = detect(data)
    if fmt == AUTO:
        if found is None or found == PERFCI:
            raise RecordError(f"{path}: not a perfci run record, nor a result perfci can import (known formats: "
                              f"{', '.join(FORMATS)}); name one with --format")  # fmt: skip
        fmt = found
    if fmt not in FORMATS:
        raise RecordError(f"{path}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if not isinstance(data, dict):
        raise RecordError(f"{path}: {fmt}: expected a JSON object at the top level")
    return fmt, FORMATS[fmt].read(data, path), raw


def load(path: Path, *, fmt: str = AUTO, build: str | None = None, hardware: str | None = None,
         now: datetime | None = None) -> RunRecord:  # fmt: skip
    """A foreign result file as a run record (see `common.to_record` for its run id and provenance)."""
    path = Path(path)
    fmt, imported, raw = read_foreign(path, fmt)
    return to_record(imported, raw=raw, fmt=fmt, file_name=path.name, build=build, hardware=hardware, now=now)


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
    except OSError as e:
        raise RecordError(f"{path}: cannot read ({e.strerror or e})") from e
    if len(raw) > MAX_RECORD_BYTES:
        raise RecordError(f"{path}: larger than {MAX_RECORD_BYTES} bytes")
    return raw


def ingest_files(db: Database, paths: list[Path], *, fmt: str = AUTO, build: str | None = None,
                 hardware: str | None = None, out_dir: Path | None = None) -> store.IngestReport:  # fmt: skip
    """`store.ingest_files` for perfci's records and foreign results alike: each file on its own (a refused one
    writes nothing), a directory standing for its *.json. `fmt` AUTO reads a perfci record as one and detects a
    foreign format by content. An imported result's record is also written to `out_dir`, when given, so that
    `perfci db rebuild` from that folder keeps it."""
    report = store.IngestReport()
    files = [f for p in map(Path, paths) for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p])]
    for path in files:
        try:
            record, imported = _record(path, fmt=fmt, build=build, hardware=hardware)
            kept = None if out_dir is None else Path(out_dir) / f"{record.run_id}.json"
            if imported and kept is not None and not kept.exists():  # the same import again: already kept
                write_record(record, kept)
            stored = store.ingest(db, record, record_path=str(path))
        except RecordError as e:
            report.refused.append((path, str(e)))
            continue
        (report.ingested if stored else report.already_present).append(path)
    return report


def _record(path: Path, *, fmt: str, build: str | None, hardware: str | None) -> tuple[RunRecord, bool]:
    if fmt in (AUTO, PERFCI):
        try:
            return read_record(path), False
        except RecordError as e:
            if fmt == PERFCI or "not a perfci run record" not in str(e):
                raise
    return load(path, fmt=fmt, build=build, hardware=hardware), True
