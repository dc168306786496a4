"""The bisect tables (migration 0003): one row per bisection (`bisects`), its candidate builds
(`bisect_candidates`) and the trials measured so far (`bisect_trials`). The search is perfci.bisect's; this
module only stores and reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from perfci.store import read_frame

if TYPE_CHECKING:
    import pandas


def create(db: Database, fields: dict[str, Any], candidates: Iterable[dict[str, Any]]) -> int:
    """A new bisection and its candidates (`label`, `subject`, `url`, in order), in one transaction."""
    with db.conn:
        bisect_id = db["bisects"].insert(fields).last_pk
        db["bisect_candidates"].insert_all(
            {"bisect_id": bisect_id, "idx": i, **c, "skipped": False} for i, c in enumerate(candidates)
        )
    return bisect_id


def update(db: Database, bisect_id: int, **fields: Any) -> None:
    db["bisects"].update(bisect_id, fields)


def add_trial(db: Database, bisect_id: int, *, index: int, value: float | None, error: str | None,
              run_id: str | None, now: str) -> None:  # fmt: skip
    """One finished trial: a measured value, or (value None) a candidate skipped with its error; the bisect's
    trial count follows, in the same transaction."""
    with db.conn:
        seq = db.execute("SELECT count(*) FROM bisect_trials WHERE bisect_id = ?", [bisect_id]).fetchone()[0]
        if value is None:
            db["bisect_candidates"].update((bisect_id, index), {"skipped": True, "error": error})
        else:
            db["bisect_trials"].insert({"bisect_id": bisect_id, "seq": seq, "idx": index, "value": value,
                                        "run_id": run_id, "created": now})  # fmt: skip
            seq += 1
        skipped = db.execute("SELECT count(*) FROM bisect_candidates WHERE bisect_id = ? AND skipped",
                             [bisect_id]).fetchone()[0]  # fmt: skip
        db["bisects"].update(bisect_id, {"trials": seq + skipped, "updated": now})


def listing(db: Database) -> list[dict[str, Any]]:
    """Every bisection, newest first, as `perfci bisect list` shows them."""
    return list(db.query("SELECT id, status, outcome, engine, metric, good, bad, culprit, confidence, trials, "
                         "updated FROM bisects ORDER BY id DESC"))  # fmt: skip


def load(db: Database, bisect_id: int) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]] | None:
    """(the bisect's row, its candidates by index, its measured trials in order); None if there is no such one."""
    rows = list(db.query("SELECT * FROM bisects WHERE id = ?", [bisect_id]))
    if not rows:
        return None
    cands = list(db.query("SELECT * FROM bisect_candidates WHERE bisect_id = ? ORDER BY idx", [bisect_id]))
    taken = list(db.query("SELECT idx, value FROM bisect_trials WHERE bisect_id = ? ORDER BY seq", [bisect_id]))
    return rows[0], cands, taken


def rows(db: Database, fields: Sequence[str], regression_ids: Iterable[int] | None = None) -> list[tuple]:
    """`fields` of bisections, newest first: all, or those started from the given findings."""
    sql = f"SELECT {', '.join(fields)} FROM bisects"
    params: list[Any] = []
    if regression_ids is not None:
        ids = list(regression_ids)
        sql += f" WHERE regression_id IN ({', '.join('?' * len(ids))})"
        params = ids
    return db.execute(sql + " ORDER BY updated DESC, id DESC", params).fetchall()


def running_frame(db: Database) -> pandas.DataFrame:
    """Bisections still running, most recently updated first."""
    return read_frame(
        db, "SELECT id, created, updated, status, driver, engine, hardware_label, suite, workload, load_label, metric, "
        "good, bad, trials, regression_id FROM bisects WHERE status = 'running' ORDER BY updated DESC"
    )


def culprits_frame(db: Database) -> pandas.DataFrame:
    """Bisections that named a culprit."""
    return read_frame(
        db, "SELECT id, engine, hardware_label, suite, workload, load_label, metric, culprit, culprit_subject, "
        "culprit_url, confidence, outcome FROM bisects WHERE culprit IS NOT NULL"
    )
