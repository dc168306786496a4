"""The SQLite store: loaded from run records, queried as pandas DataFrames.

Records are the source of truth; the DB is an index over them that `rebuild` can always recreate. Ingest
is idempotent (a run id already stored changes nothing) and all-or-nothing per record (one transaction).
Point metrics are flattened (`ttft_ms: {p50: …}` -> `ttft_ms_p50`); those of the metric vocabulary
(perfci.metrics) go to typed columns, any other key to the JSON column `extra_metrics`, so record
content never changes the schema. Every SQLite error on a store connection is a StoreError naming the file.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json
from sqlite_utils import Database
from sqlite_utils.db import quote_identifier

from perfci import metrics
from perfci.errors import RecordError, StoreError
from perfci.store import migrations
from perfci.store.records import Point, RunRecord, read_record

if TYPE_CHECKING:
    import pandas

BUSY_TIMEOUT_MS = 60_000
TABLES = ("runs", "startups", "startup_phases", "points", "requests")
# The typed metric columns of `points` (migration 0001): the metric vocabulary. A metric added to
# perfci.metrics needs a migration that adds its column; until then it lands in `extra_metrics`.
METRIC_COLUMNS = metrics.VOCABULARY
EXTRA_METRICS = "extra_metrics"
NO_STORE_HINT = "run `perfci run` or `perfci db rebuild` to make one"


@dataclass
class IngestReport:
    """What happened to each file: loaded, skipped because its run id is stored, or refused with the reason."""

    ingested: list[Path] = field(default_factory=list)
    already_present: list[Path] = field(default_factory=list)
    refused: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {
            "ingested": len(self.ingested),
            "already_present": len(self.already_present),
            "refused": len(self.refused),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for `--json` output."""
        return {
            "counts": self.counts,
            "ingested": [str(p) for p in self.ingested],
            "already_present": [str(p) for p in self.already_present],
            "refused": [{"path": str(p), "error": error} for p, error in self.refused],
        }

    def summary(self) -> str:
        """One line of counts, then each refusal (its message names the file)."""
        c = self.counts
        head = f"{c['ingested']} ingested, {c['already_present']} already present, {c['refused']} refused"
        return "\n".join([head, *(error for _, error in self.refused)])


# --- SQLite errors as StoreErrors -------------------------------------------------------------------------

# Each converted error is a StoreError (the CLI reports it, exit 2) and still an instance of the sqlite3 class
# it replaces, because sqlite-utils catches some (e.g. OperationalError) as part of normal operation.
# ProgrammingError and InterfaceError are misuse of the API (a bug in perfci) and stay as they are.
_CONVERTED = {
    cls: type(cls.__name__, (StoreError, cls), {"__module__": __name__})
    for cls in (sqlite3.OperationalError, sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InternalError,
                sqlite3.NotSupportedError, sqlite3.DatabaseError)
}  # fmt: skip


def _explain(error: sqlite3.Error) -> str:
    name = getattr(error, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return f"the store is locked by another process (waited {BUSY_TIMEOUT_MS / 1000:g} s): {error}"
    if name.startswith("SQLITE_READONLY"):
        return f"cannot write to the store ({error}); check the permissions of the file and of its directory"
    if name.startswith("SQLITE_CORRUPT"):
        return f"the store is corrupt ({error}); rebuild it from the run records (perfci db rebuild DIR --db FILE)"
    if name == "SQLITE_NOTADB":
        return f"not a SQLite database ({error})"
    if name.startswith("SQLITE_CANTOPEN"):
        return f"cannot open the store ({error})"
    if name == "SQLITE_FULL":
        return f"the disk is full ({error})"
    if name.startswith("SQLITE_IOERR"):
        return f"I/O error on the store ({error})"
    return str(error)


@contextmanager
def sqlite_errors(path: str | Path) -> Iterator[None]:
    """Turn the SQLite errors raised inside into StoreErrors naming `path` (store connections do it already)."""
    try:
        yield
    except sqlite3.Error as e:
        if isinstance(e, StoreError):
            raise
        cls = next((_CONVERTED[c] for c in type(e).__mro__ if c in _CONVERTED), None)
        if cls is None or isinstance(e, sqlite3.ProgrammingError | sqlite3.InterfaceError):
            raise
        converted = cls(f"{path}: {_explain(e)}")
        converted.sqlite_errorcode = getattr(e, "sqlite_errorcode", None)
        converted.sqlite_errorname = getattr(e, "sqlite_errorname", None)
        raise converted from e


class _Cursor(sqlite3.Cursor):
    def execute(self, sql, parameters=(), /):  # noqa: ANN001 (sqlite3's signature)
        with sqlite_errors(self.connection.path):
            return super().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters, /):  # noqa: ANN001
        with sqlite_errors(self.connection.path):
            return super().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script, /):  # noqa: ANN001
        with sqlite_errors(self.connection.path):
            return super().executescript(sql_script)

    def fetchone(self):
        with sqlite_errors(self.connection.path):
            return super().fetchone()

    def fetchmany(self, size: int = 1):  # pandas and sqlite-utils pass the size positionally
        with sqlite_errors(self.connection.path):
            return super().fetchmany(size)

    def fetchall(self):
        with sqlite_errors(self.connection.path):
            return super().fetchall()

    def __next__(self):  # a corrupt page shows when a row is stepped to
        with sqlite_errors(self.connection.path):
            return super().__next__()


class _Connection(sqlite3.Connection):
    """A store connection: every statement goes through `_Cursor`, so each SQLite error names the file."""

    path = ":memory:"

    def cursor(self, factory=_Cursor):  # noqa: ANN001
        return super().cursor(factory)

    # sqlite3's own execute() makes a plain cursor, not one from cursor().
    def execute(self, sql, parameters=(), /):  # noqa: ANN001
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters, /):  # noqa: ANN001
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script, /):  # noqa: ANN001
        return self.cursor().executescript(sql_script)

    def commit(self) -> None:
        with sqlite_errors(self.path):
            super().commit()

    def rollback(self) -> None:
        with sqlite_errors(self.path):
            super().rollback()

    def __exit__(self, *exc):  # noqa: ANN002
        with sqlite_errors(self.path):
            return super().__exit__(*exc)


def read_frame(db: Database, sql: str, params: Iterable[Any] = ()) -> pandas.DataFrame:
    """`pandas.read_sql_query` on a store, whose SQLite errors stay StoreErrors (pandas wraps execute's)."""
    import pandas  # deferred: importing pandas costs the CLI half a second on every command

    try:
        return pandas.read_sql_query(sql, db.conn, params=list(params))
    except pandas.errors.DatabaseError as e:
        if isinstance(e.__cause__, StoreError):
            raise e.__cause__ from None
        raise


# --- opening ----------------------------------------------------------------------------------------------


def open_db(path: str | Path, *, create: bool = True, readonly: bool = False) -> Database:
    """Open the perfci store at `path`; ":memory:" gives an in-memory one.

    Writers (the default) may create the file (`create=False`: it must exist) and migrate it to this schema.
    `readonly=True` is for commands that only read: the file must exist and be a store of this schema, the
    connection cannot write (PRAGMA query_only), and nothing is created or migrated. Any SQLite file that is
    not a perfci store is refused without writing to it.
    """
    shown = str(path)
    if shown != ":memory:":
        path = Path(path)
        if path.is_dir():
            raise StoreError(f"{path}: is a directory, not a perfci store file")
        if not path.exists() and (readonly or not create):
            raise StoreError(f"no store at {path} ({NO_STORE_HINT})")
    db = _connect(path, readonly=readonly)
    try:
        empty = _check_perfci_store(db, shown)
        if readonly:
            _check_current(db, shown, empty=empty)
        else:
            db.execute("PRAGMA foreign_keys = ON")
            with sqlite_errors(shown):
                db.enable_wal()
            migrations.apply(db)
    except BaseException:
        db.close()
        raise
    return db


def _connect(path: str | Path, *, readonly: bool) -> Database:
    with sqlite_errors(str(path)):
        conn = sqlite3.connect(path, factory=_Connection)
    conn.path = str(path)
    db = Database(conn)
    # Writers queue rather than fail: another process may hold the write lock for a whole migration or
    # ingest (Python's default wait is 5 s; switching a fresh file to WAL waits on it too).
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if readonly:
        db.execute("PRAGMA query_only = ON")
    return db


def _check_perfci_store(db: Database, shown: str) -> bool:
    """Refuse a SQLite file with tables but no perfci schema marker (perfci's rows in `_sqlite_migrations`),
    before anything is written to it. True for an empty file (no tables yet): a new store."""
    names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not names:
        return True
    if migrations.MIGRATIONS.migrations_table not in names or not migrations.MIGRATIONS.applied(db):
        raise StoreError(f"{shown}: a SQLite database but not a perfci store (no perfci schema marker); "
                         "refusing to touch it")  # fmt: skip
    return False


def _check_current(db: Database, shown: str, *, empty: bool) -> None:
    if empty:
        raise StoreError(f"{shown}: an empty file, not a perfci store ({NO_STORE_HINT})")
    migrations.refuse_unknown(db)
    pending = migrations.MIGRATIONS.pending(db)
    if pending:
        raise StoreError(
            f"{shown}: the store was made by an older perfci (migrations {', '.join(m.name for m in pending)} are "
            "pending); a command that writes to it upgrades it (perfci ingest, perfci detect, perfci db rebuild)"
        )


def ingest(db: Database, record: RunRecord, *, record_path: str | None = None) -> bool:
    """Store one record in one transaction. False (and nothing written) if its run id is already stored."""
    rows = _rows(record, record_path)  # built first, so a record the store cannot hold writes nothing
    with write_transaction(db):
        before = db.conn.total_changes
        db["runs"].insert(rows.pop("runs")[0], ignore=True)
        if db.conn.total_changes == before:
            return False
        for table, table_rows in rows.items():
            _insert_many(db, table, table_rows)
    return True


@contextmanager
def write_transaction(db: Database) -> Iterator[None]:
    """BEGIN IMMEDIATE takes the write lock up front (waiting on other writers). A deferred BEGIN, as in
    `db.atomic()`, fails at once with "database is locked" when it reads (sqlite-utils reads the schema)
    and another connection commits before it writes: WAL cannot upgrade a stale snapshot."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.rollback()
        raise
    db.commit()


def check_writable(path: str | Path) -> None:
    """Refuse, before a run measures anything, a store `open_db` could not create or write: a directory, a
    missing or read-only directory (SQLite writes its WAL beside the file), a read-only file, or a file that is
    no perfci store (opened, and so migrated, now rather than after the run). A StoreError naming the path."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, not a store file")
    directory = path.parent
    if not directory.is_dir():
        raise StoreError(f"{path}: {directory} " + ("is not a directory" if directory.exists() else "does not exist"))
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreError(f"{path}: directory {directory} is not writable")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"{path}: store file is not writable")
        open_db(path).close()


def ingest_files(db: Database, paths: Iterable[Path]) -> IngestReport:
    """Ingest each file on its own: a refused file writes nothing and does not stop the others. A directory
    stands for every *.json under it."""
    report = IngestReport()
    for path in (f for p in map(Path, paths) for f in (sorted(p.rglob("*.json")) if p.is_dir() else [p])):
        try:
            record = read_record(path)
            stored = ingest(db, record, record_path=str(path))
        except RecordError as e:
            report.refused.append((path, str(e)))
            continue
        (report.ingested if stored else report.already_present).append(path)
    return report


# What run records do not hold, kept from the store a rebuild replaces: findings with the statuses people gave
# them (and the ids issues and bisects refer to), bisects, and what the watcher has seen and planned.
CARRIED_TABLES = ("regressions", "regression_series", "bisects", "bisect_candidates", "bisect_trials",
                  "watched_builds", "planned_jobs")  # fmt: skip


# The temp file a rebuild builds the new store in, next to it; SQLite may add -wal/-shm/-journal sidecars.
REBUILD_TMP = ".{name}.rebuild-{pid}-{token}.tmp"
_REBUILD_TMP = re.compile(r"^\.(?P<name>.+)\.rebuild-(?P<pid>\d+)-[0-9a-f]{32}\.tmp(-wal|-shm|-journal)?$")


def rebuild(db_path: Path, records_dir: Path, *, allow_partial: bool = False) -> IngestReport:
    """Build a fresh store from every *.json under `records_dir` and swap it in for `db_path` atomically.
    The replaced store's CARRIED_TABLES (findings and their statuses, bisects, watch state) are copied over.

    When a record is refused the store is not replaced (a StoreError naming each refused file), unless
    `allow_partial`: a store without those runs would silently lose them. The new store is built in a temp
    file whose name says so (REBUILD_TMP); the temp files of a killed rebuild are removed by the next one.
    Nobody may hold `db_path` open meanwhile: its WAL sidecars belong to the replaced file and are removed.
    """
    db_path, records_dir = Path(db_path), Path(records_dir)
    if not records_dir.is_dir():
        raise StoreError(f"{records_dir}: not a directory of run records")
    if db_path.is_dir():
        raise StoreError(f"{db_path}: is a directory, not a perfci store file")
    remove_stale_temp_files(db_path)
    replaced = db_path.exists() and _is_store(db_path)  # a foreign or newer file is refused before anything is built
    tmp = db_path.with_name(REBUILD_TMP.format(name=db_path.name, pid=os.getpid(), token=uuid.uuid4().hex))
    try:
        db = open_db(tmp)  # SQLite creates it with the umask
        try:
            report = ingest_files(db, sorted(records_dir.rglob("*.json")))
            if report.refused and not allow_partial:
                raise StoreError("\n".join([
                    f"{db_path}: not replaced: {len(report.refused)} run record file(s) under {records_dir} were "
                    "refused, and a store without their runs would lose them (fix or move those files, or rebuild "
                    "with --allow-partial to leave them out):",
                    *(f"  {error}" for _, error in report.refused),
                ]))  # fmt: skip
            if replaced:
                _carry_over(db, db_path)
        finally:
            db.close()  # the last connection to close checkpoints the WAL into the file and deletes it
        for sidecar in ("-wal", "-shm"):
            Path(f"{db_path}{sidecar}").unlink(missing_ok=True)
        os.replace(tmp, db_path)
    except BaseException:
        for leftover in ("", "-wal", "-shm", "-journal"):
            Path(f"{tmp}{leftover}").unlink(missing_ok=True)
        raise
    return report


def remove_stale_temp_files(db_path: Path) -> list[Path]:
    """Remove the temp files (with their sidecars) that rebuilds of `db_path` left when their process died;
    returns them. A rebuild whose process is alive keeps its own."""
    db_path = Path(db_path)
    removed = []
    for path in sorted(db_path.parent.glob(f".{db_path.name}.rebuild-*.tmp*")):
        match = _REBUILD_TMP.match(path.name)
        if match is None or match["name"] != db_path.name or _alive(int(match["pid"])):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not rebuilding into it now: rebuilds run one at a time
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _is_store(db_path: Path) -> bool:
    """True for a perfci store of a schema this perfci knows (older ones included), False for an empty SQLite
    file; refuses anything else. Reads only."""
    db = _connect(db_path, readonly=True)
    try:
        if _check_perfci_store(db, str(db_path)):
            return False
        migrations.refuse_unknown(db)
        return True
    finally:
        db.close()


def open_existing(db_path: Path) -> Database:
    """Read-only access to an existing store of any schema this perfci knows (older ones included)."""
    if not Path(db_path).is_file():
        raise StoreError(f"no store at {db_path} ({NO_STORE_HINT})")
    if not _is_store(db_path):
        raise StoreError(f"{db_path}: an empty file, not a perfci store")
    return _connect(db_path, readonly=True)


def _carry_over(db: Database, old_path: Path) -> None:
    """Copy CARRIED_TABLES from the store at `old_path`, which may be of an older schema: the tables it lacks
    are skipped, and only the columns it has are copied."""
    db.execute("ATTACH DATABASE ? AS old", [str(old_path)])
    try:
        with write_transaction(db):
            for table in CARRIED_TABLES:
                columns = [row[1] for row in db.execute(f"PRAGMA old.table_info({quote_identifier(table)})")]
                if not columns:
                    continue
                listed = ", ".join(map(quote_identifier, columns))
                db.execute(f"INSERT INTO main.{quote_identifier(table)} ({listed}) "
                           f"SELECT {listed} FROM old.{quote_identifier(table)}")  # fmt: skip
    finally:
        db.execute("DETACH DATABASE old")


def row_counts(db: Database) -> dict[str, int]:
    return {table: db[table].count for table in TABLES}


def runs_frame(db: Database, *, limit: int | None = None) -> pandas.DataFrame:
    """One row per run, newest first, with its number of points and of points that did not fail."""
    sql = (
        "SELECT r.*, (SELECT count(*) FROM points p WHERE p.run_id = r.run_id) AS points, "
        "(SELECT count(*) FROM points p WHERE p.run_id = r.run_id AND p.status = 'ok') AS points_ok "
        "FROM runs r ORDER BY created DESC, run_id"
    )
    params: list[Any] = []
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return read_frame(db, sql, params)


def points_frame(db: Database, *, run_id: str | None = None) -> pandas.DataFrame:
    """One row per point with its run's build, hardware and suite, oldest run first, in point order."""
    sql = (
        'SELECT r.engine, r.version, r."commit", r.hardware_label, r.suite, r.suite_hash, r.created, p.* '
        "FROM points p JOIN runs r USING (run_id)"
    )
    params: list[Any] = []
    if run_id is not None:
        sql += " WHERE p.run_id = ?"
        params.append(run_id)
    return read_frame(db, sql + " ORDER BY r.created, p.run_id, p.idx", params)


def startups_frame(db: Database, *, run_id: str | None = None) -> pandas.DataFrame:
    """One row per startup phase with its start (model, measured cache state, requested state, ready, total_s)
    and its run's build, hardware and suite, oldest run first. A start that logged no phase still has one row,
    with `phase` null."""
    sql = (
        'SELECT r.engine, r.version, r."commit", r.hardware_label, r.suite, r.suite_hash, r.created, s.run_id, '
        "s.idx, s.model, s.cache, s.requested, s.ready, s.total_s, ph.phase, ph.seconds "
        "FROM startups s JOIN runs r USING (run_id) LEFT JOIN startup_phases ph ON ph.startup_id = s.id"
    )
    params: list[Any] = []
    if run_id is not None:
        sql += " WHERE s.run_id = ?"
        params.append(run_id)
    return read_frame(db, sql + " ORDER BY r.created, s.run_id, s.idx, ph.phase", params)


# What `perfci detect` concluded (migration 0002; docs/findings.md). perfci.verdicts.findings decides; these write.
REGRESSION_STATUSES = ("open", "acknowledged", "fixed", "false-positive")
_MEMBER_COLUMNS = ("model", "workload", "load_label", "metric", "method", "last_good", "rel_change", "ci_low",
                   "ci_high", "pvalue", "pending")  # fmt: skip


def judged_run_ids(db: Database) -> set[str]:
    return {row[0] for row in db.execute("SELECT run_id FROM judged_runs")}


def save_judgements(db: Database, judged: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> None:
    """Store runs' judgements (`judged_runs` rows) and their series verdicts, replacing earlier ones of those runs."""
    with write_transaction(db):
        for row in judged:
            db.execute("DELETE FROM verdicts WHERE run_id = ?", [row["run_id"]])
            db.execute("DELETE FROM judged_runs WHERE run_id = ?", [row["run_id"]])
        _insert_many(db, "judged_runs", judged)
        _insert_many(db, "verdicts", verdicts)


def save_findings(db: Database, findings: list[dict[str, Any]], *, now: str,
                  rescanned: Iterable[tuple[str, str, str]] = ()) -> list[int]:  # fmt: skip
    """Upsert findings and their member series; returns their ids, in order.

    A finding is identified by (engine, hardware_label, suite, first_bad): one seen before keeps its id,
    status, why and first_seen, and gets last_seen = `now`; so do its members (identified by series and
    method). Then, in each rescanned (engine, hardware_label, suite), pending change-point members of open
    findings that were not seen now are dropped (later builds did not bear them out), and open findings
    left with no member are deleted. Each finding's summary columns are rewritten from its members.
    """
    ids: list[int] = []
    with write_transaction(db):
        for finding in findings:
            (regression_id,) = db.execute(
                "INSERT INTO regressions (engine, hardware_label, suite, first_bad, members, confirmed, status, "
                "first_seen, last_seen) VALUES (?, ?, ?, ?, 0, 0, 'open', ?, ?) "
                "ON CONFLICT (engine, hardware_label, suite, first_bad) DO UPDATE SET last_seen = excluded.last_seen "
                "RETURNING id",
                [finding["engine"], finding["hardware_label"], finding["suite"], finding["first_bad"], now, now],
            ).fetchone()
            ids.append(regression_id)
            for member in finding["members"]:
                values = [regression_id, *(member[c] for c in _MEMBER_COLUMNS), now, now]
                db.execute(
                    "INSERT INTO regression_series (regression_id, {}, first_seen, last_seen) VALUES ({}) "
                    "ON CONFLICT DO UPDATE SET {}, last_seen = excluded.last_seen".format(
                        ", ".join(_MEMBER_COLUMNS),
                        ", ".join("?" * len(values)),
                        ", ".join(f"{c} = excluded.{c}" for c in _MEMBER_COLUMNS[5:]),
                    ),
                    values,
                )
        touched = set(ids)
        for scope in rescanned:
            in_scope = "SELECT id FROM regressions WHERE engine = ? AND hardware_label = ? AND suite = ?"
            touched |= {row[0] for row in db.execute(in_scope, list(scope))}
            db.execute(
                "DELETE FROM regression_series WHERE method = 'change-point' AND pending AND last_seen <> ? "
                f"AND regression_id IN ({in_scope} AND status = 'open')",
                [now, *scope],
            )
        for regression_id in sorted(touched):
            _summarise_regression(db, regression_id)
        db.execute(
            "DELETE FROM regressions WHERE status = 'open' AND NOT EXISTS "
            "(SELECT 1 FROM regression_series m WHERE m.regression_id = regressions.id)"
        )
    return ids


def _summarise_regression(db: Database, regression_id: int) -> None:
    # The representative member: confirmed before pending, then the smallest p-value, then the largest change.
    db.execute(
        "UPDATE regressions SET (last_good, rel_change, ci_low, ci_high, pvalue) = "
        "(SELECT last_good, rel_change, ci_low, ci_high, pvalue FROM regression_series m "
        " WHERE m.regression_id = regressions.id ORDER BY pending, pvalue, abs(rel_change) DESC LIMIT 1), "
        "members = (SELECT count(*) FROM regression_series m WHERE m.regression_id = regressions.id), "
        "confirmed = EXISTS (SELECT 1 FROM regression_series m WHERE m.regression_id = regressions.id AND NOT pending) "
        "WHERE id = ?",
        [regression_id],
    )


def set_regression_status(db: Database, regression_id: int, status: str, *, why: str | None,
                          fixed_in: str | None = None) -> bool:  # fmt: skip
    """Set a finding's status and why (and the build it was fixed in); False when there is no such finding."""
    if status not in REGRESSION_STATUSES:
        raise StoreError(f"unknown regression status {status!r}; one of {', '.join(REGRESSION_STATUSES)}")
    with write_transaction(db):
        sql = "UPDATE regressions SET status = ?, why = ?, fixed_in = ? WHERE id = ?"
        cursor = db.execute(sql, [status, why, fixed_in, regression_id])
    return cursor.rowcount == 1


def regressions_frame(db: Database, *, status: str | None = None, ids: Iterable[int] | None = None) -> pandas.DataFrame:
    """Findings, newest first: all, those with `status`, or those with the given ids."""
    where, params = [], []
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if ids is not None:
        ids = list(ids)
        where.append(f"id IN ({', '.join('?' * len(ids))})")
        params += ids
    sql = "SELECT * FROM regressions" + (f" WHERE {' AND '.join(where)}" if where else "")
    return read_frame(db, sql + " ORDER BY last_seen DESC, id DESC", params)


def regression_members_frame(db: Database, ids: Iterable[int]) -> pandas.DataFrame:
    """The member series of the given findings, by finding, then series."""
    ids = list(ids)
    sql = (
        "SELECT r.engine, r.hardware_label, r.suite, r.first_bad, m.* FROM regression_series m "
        f"JOIN regressions r ON r.id = m.regression_id WHERE m.regression_id IN ({', '.join('?' * len(ids))}) "
        "ORDER BY m.regression_id, m.model, m.workload, m.load_label, m.metric, m.method"
    )
    return read_frame(db, sql, ids)


def latest_judged_frame(db: Database) -> pandas.DataFrame:
    """The runs the newest detect pass judged, with their run's build and scope, oldest run first."""
    return read_frame(
        db, "SELECT j.*, r.engine, r.version, r.\"commit\", r.hardware_label, r.suite FROM judged_runs j "
        "JOIN runs r USING (run_id) WHERE j.judged_at = (SELECT max(judged_at) FROM judged_runs) "
        "ORDER BY r.created, j.run_id"
    )


def judged_frame(db: Database) -> pandas.DataFrame:
    """Every judged run: its baseline and overall verdict."""
    return read_frame(db, "SELECT run_id, baseline, verdict FROM judged_runs")


def verdicts_frame(db: Database, run_ids: Iterable[str] | None = None) -> pandas.DataFrame:
    """Stored series verdicts: every column of those of the given runs (by run and series), or, with no run ids,
    the run, model and verdict of all of them."""
    if run_ids is None:
        return read_frame(db, "SELECT run_id, model, verdict FROM verdicts")
    ids = list(run_ids)
    return read_frame(db, f"SELECT * FROM verdicts WHERE run_id IN ({', '.join('?' * len(ids))}) "
                      "ORDER BY run_id, model, workload, load_label, metric", ids)  # fmt: skip


def finding_series_frame(db: Database) -> pandas.DataFrame:
    """Every finding's member series, with the finding's scope, first bad build and status."""
    return read_frame(
        db, "SELECT r.engine, r.hardware_label, r.suite, r.first_bad, r.status, m.model, m.workload, m.load_label, "
        "m.metric, m.method, m.pending, m.rel_change FROM regression_series m JOIN regressions r ON r.id = "
        "m.regression_id"
    )


def run_ids(db: Database) -> set[str]:
    return {row[0] for row in db.execute("SELECT run_id FROM runs")}


def run_sources(db: Database, *, engine: str, hardware_label: str, suite: str) -> list[tuple[str, str, str, str]]:
    """(engine, version, commit, source) of the scope's runs, oldest first."""
    return db.execute(
        'SELECT engine, version, "commit", source FROM runs WHERE engine = ? AND hardware_label = ? AND suite = ? '
        "ORDER BY created", [engine, hardware_label, suite],
    ).fetchall()  # fmt: skip


def backup(db_path: Path, target: Path) -> None:
    """A consistent copy of the store at `db_path` (WAL included) written to `target`, one self-contained file
    (no -wal sidecar next to a file that is committed). The store is only read."""
    source = open_existing(db_path)
    try:
        copy = sqlite3.connect(target)
        try:
            with sqlite_errors(db_path):
                source.conn.backup(copy)
            with sqlite_errors(target):
                copy.execute("PRAGMA journal_mode = DELETE")
        finally:
            copy.close()
    finally:
        source.close()

def _rows(record: RunRecord, record_path: str | None) -> dict[str, list[dict[str, Any]]]:
    """The record as table rows, in insertion order (parents before children)."""
    run_id = record.run_id
    run = {
        "run_id": run_id,
        "created": record.created,
        "perfci_version": record.perfci_version,
        "suite": record.suite.name,
        "suite_hash": record.suite.hash,
        "suite_path": record.suite.path,
        "engine": record.build.engine,
        "version": record.build.version,
        "commit": record.build.commit,
        "source": record.build.source,
        "kernels": record.build.kernels,
        "hardware_label": record.hardware.label,
        "hardware": json.dumps(record.hardware.fingerprint),
        "engine_argv": json.dumps(record.engine_argv),
        "environment": json.dumps(record.environment),
        "status": record.status,
        "error": record.error,
        "log_tail": record.log_tail,
        "record_path": record_path,
    }
    startups, phases = [], []
    for i, s in enumerate(record.startups):
        startup_id = f"{run_id}:{i}"
        startups.append(
            {
                "id": startup_id,
                "run_id": run_id,
                "idx": i,
                "model": s.model,
                "cache": s.cache,
                "requested": s.requested,
                "caches": None if s.caches is None else json.dumps({k: v.model_dump() for k, v in s.caches.items()}),
                "weights_bytes": s.weights.bytes if s.weights else None,
                "weights_resident_bytes": s.weights.resident_bytes if s.weights else None,
                "total_s": s.total_s,
                "ready": s.ready,
                "error": s.error,
                "lines": json.dumps(s.lines),
            }
        )
        phases += [
            {"startup_id": startup_id, "run_id": run_id, "phase": name, "seconds": seconds}
            for name, seconds in s.phases.items()
        ]
    points = [_point_row(run_id, p) for p in record.points]
    requests = [row for p in record.points for row in _request_rows(run_id, p)]
    return {"runs": [run], "startups": startups, "startup_phases": phases, "points": points, "requests": requests}


def _point_row(run_id: str, p: Point) -> dict[str, Any]:
    row = {
        "point_id": f"{run_id}:{p.index}",
        "run_id": run_id,
        "idx": p.index,
        "model": p.model,
        "workload": p.workload,
        "load_kind": p.load.kind,
        "load_value": p.load.value,
        "arrival": p.load.arrival,
        "burstiness": p.load.burstiness,
        "max_concurrency": p.load.max_concurrency,
        "load_label": p.load_label,
        "repeat": p.repeat,
        "status": p.status,
        "error": p.error,
        "started": p.started,
        "telemetry": json.dumps(p.telemetry),
    }
    try:
        known, extra = metrics.split(metrics.flatten(p.metrics))
    except RecordError as e:
        raise RecordError(f"run {run_id} point {p.index}: {e}") from None
    # Every row has every column (see _insert_many), whatever metrics its point has.
    return row | dict.fromkeys(METRIC_COLUMNS) | known | {EXTRA_METRICS: json.dumps(extra) if extra else None}


def _request_rows(run_id: str, p: Point) -> list[dict[str, Any]]:
    r = p.requests
    point_id = f"{run_id}:{p.index}"
    rows = []
    columns = (r.send_ms, r.ttft_ms, r.e2e_ms, r.prompt_tokens, r.output_tokens, r.status, r.error, r.error_kind,
               r.itl_ms)  # fmt: skip
    for i, (send, ttft, e2e, prompt, out, status, error, kind, itl) in enumerate(zip(*columns, strict=True)):
        # TPOT as `vllm bench serve` defines it; undefined for a single output token.
        timed = ttft is not None and e2e is not None and out is not None and out > 1
        tpot = (e2e - ttft) / (out - 1) if timed else None
        rows.append(
            {
                "point_id": point_id,
                "idx": i,
                "run_id": run_id,
                "send_ms": send,
                "ttft_ms": ttft,
                "e2e_ms": e2e,
                "tpot_ms": tpot,
                "prompt_tokens": prompt,
                "output_tokens": out,
                "status": status,
                "error": error,
                "error_kind": kind,
                "itl_ms": to_json(itl).decode(),  # pydantic-core: ~5x faster than json.dumps here
            }
        )
    return rows


def _insert_many(db: Database, table: str, rows: list[dict[str, Any]]) -> None:
    """Plain executemany: for 40k request rows it takes under half the time of `Table.insert_all`, whose
    per-value type checks dominate ingest. Every row has the first row's keys (see `_rows`)."""
    if not rows:
        return
    columns = list(rows[0])
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        quote_identifier(table), ", ".join(map(quote_identifier, columns)), ", ".join("?" * len(columns))
    )
    db.conn.executemany(sql, [tuple(row[c] for c in columns) for row in rows])
