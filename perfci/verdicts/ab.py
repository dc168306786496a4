"""`perfci ab`: a baseline and a candidate build measured interleaved on this machine (docs/ab.md).

N blocks in ABBA order (A B B A A B B A …); each block is one normal run (`runner.run_and_store`: a fresh
engine start, the suite's warmup, then its points), stored like any other run; the session links them in
its own tables (`ab_sessions`, `ab_blocks`, `ab_verdicts`). The machine's identity (hardware fingerprint)
must be the same in every block. The statistics are in perfci.verdicts.abstats.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlite_utils import Database

from perfci import utc
from perfci.config import Suite
from perfci.errors import ConfigError, Interrupted
from perfci.measure import runner
from perfci.metrics import POINT_METRICS, STARTUP_PREFIX, STARTUP_WORKLOAD, flatten, higher_is_better
from perfci.store import sessions
from perfci.store.records import RunRecord
from perfci.verdicts import abstats
from perfci.verdicts.abstats import Judgement, SeriesValues
from perfci.verdicts.series import build_label

DEFAULT_BLOCKS = 12  # ABBAABBAABBA: balanced against a linear drift, 6 starts per build (docs/benchmarks.md, A/B power)
MIN_BLOCKS = 4
BASELINE, CANDIDATE = "A", "B"
# The fingerprint keys that must not change between blocks (clocks: where the machine reports them).
IDENTITY_KEYS = ("cpu", "cpu_cores", "memory_gib", "driver", "cuda", "gpus", "clocks")
# Series the change cannot affect: the load generator makes the same prompts for both builds.
CONTROL_METRICS = ("prompt_tokens_mean",)
JUDGED_METRICS = tuple(m for m in POINT_METRICS if m != "error_rate")  # errors: the block's status says


def abba(blocks: int) -> list[str]:
    """A B B A A B B A … cut to `blocks`."""
    return [(BASELINE, CANDIDATE, CANDIDATE, BASELINE)[i % 4] for i in range(blocks)]


class BlockReporter(Protocol):
    def block_started(self, block: int, blocks: int, arm: str, build: str) -> None: ...
    def block_finished(self, block: int, record: RunRecord) -> None: ...


@dataclass
class Session:
    id: int
    baseline: str
    candidate: str
    baseline_build: str
    candidate_build: str
    suite: str
    hardware_label: str
    blocks: list[dict[str, Any]]  # block, arm, run_id, status
    judgement: Judgement
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.judgement.verdict

    @property
    def reason(self) -> str:
        return self.judgement.reason

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "baseline": self.baseline, "candidate": self.candidate,
                "baseline_build": self.baseline_build, "candidate_build": self.candidate_build,
                "suite": self.suite, "hardware_label": self.hardware_label, "blocks": self.blocks,
                "notes": self.notes, **self.judgement.as_dict()}  # fmt: skip


def run_ab(*, baseline: str, candidate: str, suite: Suite, db: Database, out: Path, blocks: int = DEFAULT_BLOCKS,
           alpha: float = abstats.ALPHA, min_effect: float = abstats.MIN_EFFECT,
           reporter: BlockReporter | None = None, run_reporter: runner.Reporter | None = None, force: bool = False,
           resolve: Callable[..., runner.Target] = runner.resolve_target,
           on_output: Callable[[str], None] | None = None) -> Session:  # fmt: skip
    """Measure `blocks` interleaved blocks, judge them, store the session and return it. Both builds are
    installed before the first block. Stopped by a signal: the block under way is stored as an interrupted
    run, the session is marked interrupted, and Interrupted goes on up."""
    check_blocks(blocks)
    targets = {BASELINE: resolve(engine=baseline, on_output=on_output),
               CANDIDATE: resolve(engine=candidate, on_output=on_output)}  # fmt: skip
    session_id = _create(db, baseline=baseline, candidate=candidate, suite=suite.name, blocks=blocks, alpha=alpha,
                         min_effect=min_effect)  # fmt: skip
    done: list[tuple[int, str, RunRecord]] = []
    try:
        for i, arm in enumerate(abba(blocks)):
            if reporter:
                reporter.block_started(i, blocks, arm, baseline if arm == BASELINE else candidate)
            try:
                record, _ = runner.run_and_store(suite=suite, target=targets[arm], db=db, out=out,
                                                 reporter=run_reporter, force=force)  # fmt: skip
            except Interrupted as stop:
                if stop.record is not None:
                    _add_block(db, session_id, i, arm, stop.record)
                raise
            _add_block(db, session_id, i, arm, record)
            done.append((i, arm, record))
            if reporter:
                reporter.block_finished(i, record)
    except BaseException as e:
        stopped = isinstance(e, KeyboardInterrupt)
        _finish(db, session_id, status="interrupted" if stopped else "failed", verdict=None,
                reason=f"stopped in block {len(done) + 1}" + ("" if stopped else f": {e}"))  # fmt: skip
        raise
    session = judge_blocks(done, session_id=session_id, baseline=baseline, candidate=candidate, suite=suite.name,
                           alpha=alpha, min_effect=min_effect)  # fmt: skip
    _save(db, session)
    return session


def record_session(*, db: Database, blocks: Blocks, baseline: str, candidate: str, suite: str,
                   alpha: float = abstats.ALPHA, min_effect: float = abstats.MIN_EFFECT) -> Session:  # fmt: skip
    """Store a session measured on another machine from its blocks' run records (already in the store) and
    judge it here, from the same records: a runner measures, and the one job that writes the data location
    records what it measured (`perfci confirm --from-records`)."""
    check_blocks(len(blocks))
    session_id = _create(db, baseline=baseline, candidate=candidate, suite=suite, blocks=len(blocks), alpha=alpha,
                         min_effect=min_effect)  # fmt: skip
    for i, arm, record in blocks:
        _add_block(db, session_id, i, arm, record)
    session = judge_blocks(blocks, session_id=session_id, baseline=baseline, candidate=candidate, suite=suite,
                           alpha=alpha, min_effect=min_effect)  # fmt: skip
    _save(db, session)
    return session


def check_blocks(blocks: int) -> None:
    if blocks < MIN_BLOCKS:
        raise ConfigError(f"--blocks {blocks}: need at least {MIN_BLOCKS} (two starts of each build)")


Blocks = Sequence[tuple[int, str, RunRecord]]  # (block index, arm, its run record), in session order


def judge_blocks(blocks: Blocks, *, session_id: int, baseline: str, candidate: str, suite: str,
                 alpha: float = abstats.ALPHA, min_effect: float = abstats.MIN_EFFECT) -> Session:  # fmt: skip
    """The session's verdicts from its blocks' run records (pure)."""
    problems = identity_changes([r for _, _, r in blocks])
    notes = [f"block {i + 1} ({'baseline' if arm == BASELINE else 'candidate'}) {r.status}: {r.error}"
             for i, arm, r in blocks if r.status != "ok"]  # fmt: skip
    per_block = [(arm, block_values(r)) for _, arm, r in blocks]
    names = sorted({k for _, values in per_block for k in values})
    series, controls = [], []
    for key in names:
        model, workload, load_label, metric = key
        a = tuple(v.get(key) for arm, v in per_block if arm == BASELINE)
        b = tuple(v.get(key) for arm, v in per_block if arm == CANDIDATE)
        values = SeriesValues(name=" · ".join(key), metric=metric,
                              higher_is_better=metric in CONTROL_METRICS or higher_is_better(metric),
                              baseline=a, candidate=b)  # fmt: skip
        (controls if metric in CONTROL_METRICS else series).append(values)
    judgement = abstats.judge(series, controls=controls, problems=problems, alpha=alpha, min_effect=min_effect)
    judgement = _engine_failures(judgement, blocks)
    first = {arm: r for _, arm, r in reversed(blocks)}
    label = lambda arm: build_label(first[arm].build.engine, first[arm].build.version, first[arm].build.commit) \
        if arm in first else ""  # noqa: E731
    return Session(id=session_id, baseline=baseline, candidate=candidate, baseline_build=label(BASELINE),
                   candidate_build=label(CANDIDATE), suite=suite,
                   hardware_label=blocks[0][2].hardware.label if blocks else "",
                   blocks=[{"block": i, "arm": arm, "run_id": r.run_id, "status": r.status} for i, arm, r in blocks],
                   judgement=judgement, notes=notes)  # fmt: skip


def _engine_failures(judgement: Judgement, blocks: Blocks) -> Judgement:
    """A candidate that fails every block while the baseline runs is a regression however the series read."""
    status = {arm: [r.status for _, a, r in blocks if a == arm] for arm in (BASELINE, CANDIDATE)}
    if status[CANDIDATE] and all(s == "failed" for s in status[CANDIDATE]) and "ok" in status[BASELINE]:
        return Judgement(abstats.FAIL, "the candidate failed in every block; the baseline ran", judgement.series)
    return judgement


def identity_changes(records: Sequence[RunRecord]) -> list[str]:
    """What of the machine's identity changed between blocks, e.g. `driver: 550.54 → 555.42 (block 5)`."""
    if not records:
        return []
    first = records[0].hardware.fingerprint
    changes = []
    for n, record in enumerate(records[1:], start=2):
        fp = record.hardware.fingerprint
        for key in IDENTITY_KEYS:
            if fp.get(key) != first.get(key):
                changes.append(f"{key}: {_short(first.get(key))} → {_short(fp.get(key))} (block {n})")
        if changes:
            break
    return changes


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "…"


Key = tuple[str, str, str, str]  # model, workload, load_label, metric


def block_values(record: RunRecord) -> dict[Key, float]:
    """One value per series of one block: every judged point metric (the median over the point's repeats),
    the control metrics, and every startup phase of its starts. Points not ok and starts not ready count as
    not measured."""
    values: dict[Key, list[float]] = {}
    for point in record.points:
        if point.status != "ok":
            continue
        flat = flatten(point.metrics)
        for metric in (*JUDGED_METRICS, *CONTROL_METRICS):
            v = flat.get(metric)
            if isinstance(v, int | float) and not isinstance(v, bool):
                values.setdefault((point.model, point.workload, point.load_label, metric), []).append(float(v))
    for start in record.startups:
        if not start.ready:
            continue
        phases = {"total": start.total_s, **start.phases}
        for phase, seconds in phases.items():
            if seconds is not None:
                key = (start.model, STARTUP_WORKLOAD, start.cache, STARTUP_PREFIX + phase)
                values.setdefault(key, []).append(float(seconds))
    return {k: statistics.median(v) for k, v in values.items()}


# --- store ---------------------------------------------------------------------------------------------


def _create(db: Database, **fields: Any) -> int:
    return sessions.create(db, created=utc.now(), status="running", **fields)


def _add_block(db: Database, session_id: int, block: int, arm: str, record: RunRecord) -> None:
    sessions.add_block(db, session_id=session_id, block=block, arm=arm, run_id=record.run_id, status=record.status)


def _finish(db: Database, session_id: int, *, status: str, verdict: str | None, reason: str) -> None:
    sessions.update(db, session_id, status=status, finished=utc.now(), verdict=verdict, reason=reason)


def _save(db: Database, session: Session) -> None:
    rows = [{"session_id": session.id, "idx": i, **{k: v for k, v in s.as_dict().items() if k != "name"},
             "series": s.name} for i, s in enumerate(session.judgement.series)]  # fmt: skip
    sessions.finish(db, session.id, rows, status="done", finished=utc.now(), verdict=session.verdict,
                    reason=session.judgement.reason, notes=json.dumps(session.notes),
                    baseline_build=session.baseline_build, candidate_build=session.candidate_build,
                    hardware_label=session.hardware_label)  # fmt: skip


def load_session(db: Database, session_id: int | None = None) -> Session:
    """A finished session from the store; None: the newest."""
    if session_id is None:
        session_id = sessions.newest_done(db)
        if session_id is None:
            raise ConfigError("no finished A/B session is stored (run `perfci ab` first)")
    row = sessions.session(db, session_id)
    if row is None:
        raise ConfigError(f"no A/B session {session_id} is stored")
    sid, status, baseline, candidate, base_build, cand_build, suite, hardware, verdict, reason, notes = row
    if status != "done":
        raise ConfigError(f"A/B session {session_id} is {status}: it has no verdict")
    fields = [f for f in abstats.SeriesVerdict.__dataclass_fields__ if f != "name"]
    verdicts = tuple(abstats.SeriesVerdict(name=r["series"], **{f: _none(r[f]) for f in fields})
                     for r in sessions.verdicts_frame(db, sid).to_dict("records"))  # fmt: skip
    blocks = sessions.blocks_frame(db, sid)[["block", "arm", "run_id", "status"]].to_dict("records")
    return Session(id=sid, baseline=baseline, candidate=candidate, baseline_build=base_build or "",
                   candidate_build=cand_build or "", suite=suite, hardware_label=hardware or "", blocks=blocks,
                   judgement=Judgement(verdict, reason or "", verdicts), notes=json.loads(notes or "[]"))  # fmt: skip


def _none(value: Any) -> Any:
    """SQL NULLs arrive from pandas as NaN (floats) or None; ints arrive as numpy ints."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value
