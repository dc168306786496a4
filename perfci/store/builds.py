"""The build tables (migration 0004_watch): the builds `perfci watch` has seen (`watched_builds`) and the jobs
`perfci plan` handed out (`planned_jobs`), with what they read of `runs`. The policies (what a build is
wanted for, when a job is due again) are perfci.ops.watch's and perfci.ops.plan's; this module only stores."""

from __future__ import annotations

from typing import NamedTuple

from sqlite_utils import Database


class WatchedBuild(NamedTuple):
    build: str
    version: str | None
    commit: str | None
    prerelease: bool
    first_seen: str


def yanked(db: Database, build: str) -> bool | None:
    """Whether the stored build is yanked; None when it has not been seen."""
    row = db.execute("SELECT yanked FROM watched_builds WHERE build = ?", [build]).fetchone()
    return None if row is None else bool(row[0])


def add_watched(db: Database, *, build: str, package: str, version: str | None, commit: str | None, source: str,
                uploaded: str | None, prerelease: bool, yanked: bool, yanked_reason: str | None,
                now: str) -> None:  # fmt: skip
    db["watched_builds"].insert({
        "build": build, "package": package, "version": version, "commit": commit, "source": source,
        "uploaded": uploaded, "prerelease": prerelease, "yanked": yanked, "yanked_reason": yanked_reason,
        "first_seen": now, "last_seen": now, "yanked_seen": now if yanked else None,
    })  # fmt: skip


def seen_again(db: Database, build: str, now: str) -> None:
    db.execute("UPDATE watched_builds SET last_seen = ? WHERE build = ?", [now, build])


def set_yanked(db: Database, build: str, *, yanked: bool, reason: str | None, now: str) -> None:
    db.execute("UPDATE watched_builds SET yanked = ?, yanked_reason = ?, yanked_seen = ? WHERE build = ?",
               [yanked, reason, now if yanked else None, build])  # fmt: skip


def runs_of_source(db: Database, source: str) -> int:
    (runs,) = db.execute("SELECT count(*) FROM runs WHERE source = ?", [source]).fetchone()
    return runs


def watched(db: Database, package: str) -> list[WatchedBuild]:
    """The package's builds that are not yanked, in no particular order."""
    rows = db.execute(
        'SELECT build, version, "commit", prerelease, first_seen FROM watched_builds WHERE package = ? AND NOT yanked',
        [package],
    ).fetchall()
    return [WatchedBuild(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows]


def run_outcomes(db: Database, *, source: str, hardware_label: str, suite: str) -> list[tuple[str, str]]:
    """(status, created) of every stored run of one build source on one hardware label and suite."""
    return db.execute("SELECT status, created FROM runs WHERE source = ? AND hardware_label = ? AND suite = ?",
                      [source, hardware_label, suite]).fetchall()  # fmt: skip


def handed_out(db: Database, job: str) -> tuple[int, str] | None:
    """(attempts, last_planned) of a job handed out before; None if it never was."""
    return db.execute("SELECT attempts, last_planned FROM planned_jobs WHERE job = ?", [job]).fetchone()


def hand_out(db: Database, *, job: str, build: str, hardware_label: str, suite: str, attempts: int,
             now: str) -> None:  # fmt: skip
    db.execute(
        "INSERT INTO planned_jobs (job, build, hardware_label, suite, attempts, first_planned, last_planned) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job) DO UPDATE SET attempts = excluded.attempts, "
        "last_planned = excluded.last_planned",
        [job, build, hardware_label, suite, attempts, now, now],
    )


def planned_jobs(db: Database) -> list[tuple[str, str, str, str, str]]:
    """(build, hardware_label, suite, first_planned, last_planned) of every job handed out, by job."""
    return db.execute("SELECT build, hardware_label, suite, first_planned, last_planned FROM planned_jobs "
                      "ORDER BY job").fetchall()  # fmt: skip


def runs_seen(db: Database) -> list[tuple[str, str, str]]:
    """(source, hardware_label, created) of every stored run."""
    return db.execute("SELECT source, hardware_label, created FROM runs").fetchall()
