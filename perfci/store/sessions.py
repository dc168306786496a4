"""The A/B tables (migrations 0007, 0008): sessions (`ab_sessions`), their blocks (`ab_blocks`, one run each),
their per-series verdicts (`ab_verdicts`) and the confirmations of findings they gave (`confirmations`). The
statistics and the session's course are perfci.verdicts'; this module only stores and reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from perfci.store import read_frame, write_transaction

if TYPE_CHECKING:
    import pandas


def create(db: Database, **fields: Any) -> int:
    with write_transaction(db):
        return db["ab_sessions"].insert(fields).last_pk


def add_block(db: Database, *, session_id: int, block: int, arm: str, run_id: str, status: str) -> None:
    with write_transaction(db):
        db["ab_blocks"].insert({"session_id": session_id, "block": block, "arm": arm, "run_id": run_id,
                                "status": status}, replace=True)  # fmt: skip


def update(db: Database, session_id: int, **fields: Any) -> None:
    with write_transaction(db):
        db["ab_sessions"].update(session_id, fields)


def finish(db: Database, session_id: int, verdicts: Iterable[dict[str, Any]], **fields: Any) -> None:
    """A done session: its series verdicts and its own columns, in one transaction."""
    with write_transaction(db):
        db["ab_verdicts"].insert_all(verdicts, replace=True)
        db["ab_sessions"].update(session_id, fields)


def sessions_frame(db: Database, *, limit: int | None = None) -> pandas.DataFrame:
    """Stored A/B sessions, newest first."""
    sql = "SELECT * FROM ab_sessions ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
    return read_frame(db, sql)


def verdicts_frame(db: Database, session_id: int) -> pandas.DataFrame:
    return read_frame(db, "SELECT * FROM ab_verdicts WHERE session_id = ? ORDER BY idx", [session_id])


def blocks_frame(db: Database, session_id: int) -> pandas.DataFrame:
    return read_frame(db, "SELECT * FROM ab_blocks WHERE session_id = ? ORDER BY block", [session_id])


def session_of_runs(db: Database, run_ids: Sequence[str]) -> int | None:
    """The A/B session any of these runs is a block of; None when none is."""
    marks = ", ".join("?" * len(run_ids))
    row = db.execute(f"SELECT min(session_id) FROM ab_blocks WHERE run_id IN ({marks})", list(run_ids)).fetchone()
    return None if row is None else row[0]


def newest_done(db: Database) -> int | None:
    row = db.execute("SELECT max(id) FROM ab_sessions WHERE status = 'done'").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def session(db: Database, session_id: int) -> tuple | None:
    """(id, status, baseline, candidate, baseline_build, candidate_build, suite, hardware_label, verdict, reason,
    notes) of a session; None when there is none."""
    return db.execute("SELECT id, status, baseline, candidate, baseline_build, candidate_build, suite, "
                      "hardware_label, verdict, reason, notes FROM ab_sessions WHERE id = ?",
                      [session_id]).fetchone()  # fmt: skip


def add_confirmation(db: Database, row: dict[str, Any]) -> None:
    with write_transaction(db):
        db["confirmations"].insert(row)


def confirmations(db: Database) -> list[dict[str, Any]]:
    """Every confirmation whose session measured its finding's own first bad build on the finding's hardware
    label (a finding id reused after a withdrawn one is not fooled), oldest first."""
    return list(db.query("SELECT c.* FROM confirmations c JOIN regressions r ON r.id = c.regression_id "
                         "JOIN ab_sessions s ON s.id = c.session_id WHERE s.candidate_build = r.first_bad "
                         "AND s.hardware_label = r.hardware_label ORDER BY c.id"))  # fmt: skip
