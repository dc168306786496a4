"""Example datasets: run records copied into a folder that ships (examples/), checked and scrubbed.

A record is read (upgraded and validated as the store reads it), its machine paths and credentials are
redacted again with the home and working directories of this export (perfci.redact: a record written from
another working directory still names paths under this one), validated, and written compact under its run
id. A record already there with the same run id is left as it is; nothing is half-written (records.write_record).
`perfci db export RECORD_OR_DIR... --out DIR` is the command line.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from perfci import redact
from perfci.store import records
from perfci.store.records import RunRecord


def export(*, sources: Iterable[Path], out: Path, home: str | None, cwd: str | None) -> list[Path]:
    """Copy every record file in `sources` (files, or every *.json under a directory) into `out`, scrubbed;
    return the paths written (existing run ids are skipped). RecordError names a file that is not a record."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    files = sorted({f for p in map(Path, sources) for f in (p.rglob("*.json") if p.is_dir() else [p])})
    for path in files:
        record = records.read_record(path)
        target = out / f"{record.run_id}.json"
        if target.exists():
            continue
        data = redact.redact_record(record.model_dump(mode="json"), home=home, cwd=cwd)
        written.append(records.write_record(RunRecord.model_validate(data), target))
    return written

