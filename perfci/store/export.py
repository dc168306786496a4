"""`perfci export`: a table or view of the store as CSV, JSON lines or Parquet (docs/export.md). Values are
as stored: JSON text columns stay text (the views of migration 0010 unpack them)."""

from __future__ import annotations

import io
from pathlib import Path

from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from perfci.errors import ConfigError
from perfci.store import read_frame

FORMATS = ("csv", "jsonl", "parquet")


def tables(db: Database) -> list[str]:
    """What can be exported: the store's tables and views (not SQLite's or the migrations' own)."""
    rows = db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
                      "AND name NOT LIKE '\\_%' ESCAPE '\\' ORDER BY name").fetchall()  # fmt: skip
    return [name for (name,) in rows]


def export(db: Database, *, table: str, fmt: str, out: Path | None) -> bytes | None:
    """Write `table` in `fmt` to `out` (a file, replaced atomically), or return the bytes when `out` is None
    (Parquet needs a file). A ConfigError names an unknown table or format, or a missing pyarrow."""
    known = tables(db)
    if table not in known:
        raise ConfigError(f"no table or view {table!r} in the store (there are: {', '.join(known)})")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401 - pandas would raise its own, less helpful error
        except ImportError:
            raise ConfigError("--format parquet needs pyarrow, which is not installed: "
                              "pip install 'perfci[parquet]' (or pyarrow)") from None  # fmt: skip
        if out is None:
            raise ConfigError("--format parquet writes a file: give --out FILE")
    frame = read_frame(db, f"SELECT * FROM {quote_identifier(table)}")
    if fmt == "csv":
        data = frame.to_csv(index=False).encode()
    elif fmt == "jsonl":
        data = frame.to_json(orient="records", lines=True, date_format="iso").encode() if len(frame) else b""
    else:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False, engine="pyarrow")
        data = buffer.getvalue()
    if out is None:
        return data
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{out}: cannot write ({e.strerror or e})") from e
    return None
