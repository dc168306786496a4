"""The durable data location: a directory (in CI, a checkout of the `perfci-data` branch) that keeps

    records/YYYY/MM/<run_id>.json   every run record, append-only: written once, never changed or removed
    perfci.db                       a snapshot of the store: what records cannot rebuild (findings, their
                                    statuses, watched builds, handed-out jobs)

Runner jobs never touch it: they upload their record as an artifact. One job at a time (the `perfci-data`
concurrency group) pulls, ingests, detects and pushes. docs/data.md explains it, and how to move it to
object storage.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfci import store
from perfci.errors import RecordError, StoreError
from perfci.store.records import read_record

SNAPSHOT = "perfci.db"
RECORDS = "records"


@dataclass
class PushReport:
    added: list[str] = field(default_factory=list)  # paths inside the data location
    already_there: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (file, why)
    snapshot: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "already_there": self.already_there,
                "refused": [{"path": p, "error": e} for p, e in self.refused], "snapshot": self.snapshot}  # fmt: skip

    def summary(self) -> str:
        lines = [f"{len(self.added)} added, {len(self.already_there)} already there, {len(self.refused)} refused"]
        lines += [f"  refused {p}: {e}" for p, e in self.refused]
        if self.snapshot:
            lines.append(f"  store snapshot: {self.snapshot}")
        return "\n".join(lines)


def record_path(data_dir: Path, run_id: str, created: str) -> Path:
    """Where a record lives: by the month it was made, so no directory grows without bound."""
    return data_dir / RECORDS / created[:4] / created[5:7] / f"{run_id}.json"


def push(data_dir: Path, files: Iterable[Path], *, db_path: Path | None = None) -> PushReport:
    """Add run records to the data location, and with `db_path` replace its store snapshot by a consistent
    copy of that store. A record already there byte for byte is skipped; a different file under a stored run
    id, or a file that is not a valid record, is refused and nothing of it is written."""
    data_dir = Path(data_dir)
    report = PushReport()
    for path in map(Path, files):
        try:
            record = read_record(path)
        except RecordError as e:
            report.refused.append((str(path), str(e)))
            continue
        target = record_path(data_dir, record.run_id, record.created)
        shown = str(target.relative_to(data_dir))
        content = path.read_bytes()
        if target.exists():
            if target.read_bytes() == content:
                report.already_there.append(shown)
            else:
                report.refused.append((str(path), f"{shown} exists with other content; records are never changed"))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(target, content)
        report.added.append(shown)
    if db_path is not None:
        snapshot(Path(db_path), data_dir / SNAPSHOT)
        report.snapshot = SNAPSHOT
    return report


def snapshot(db_path: Path, target: Path) -> None:
    """A consistent copy of the store at `db_path` (WAL included) as one self-contained file, swapped in.
    `db_path` must be a perfci store (of this or an older schema); it is only read."""
    if not db_path.is_file():
        raise StoreError(f"{db_path}: no such store to snapshot")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        store.backup(db_path, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def pull(data_dir: Path, db_path: Path) -> store.IngestReport:
    """Bring the store at `db_path` up to date with the data location: start from its snapshot when there is
    no local store yet, then ingest the records the store lacks (by run id; so pulling twice ingests nothing)."""
    data_dir, db_path = Path(data_dir), Path(db_path)
    if not data_dir.is_dir():
        raise StoreError(f"{data_dir}: no data location there")
    if not db_path.exists() and (data_dir / SNAPSHOT).is_file():
        db_path.parent.mkdir(parents=True, exist_ok=True)
        snapshot(data_dir / SNAPSHOT, db_path)
    db = store.open_db(db_path)
    try:
        stored = store.run_ids(db)
        missing = [p for p in sorted((data_dir / RECORDS).rglob("*.json")) if p.stem not in stored]
        return store.ingest_files(db, missing)
    finally:
        db.close()


def _write_atomically(target: Path, content: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(content)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
