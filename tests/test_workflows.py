"""The GitHub Actions workflows, checked offline: schema, actionlint, the policies they must keep, and that
every perfci command their `run:` steps call exists, with options it has."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflows import ACTIONS, WORKFLOWS, all_calls, load, option_names, perfci_calls, run_scripts, triggers

BIN = Path(sys.executable).parent
REQUIRED = {"ci", "watch", "benchmark", "ingest", "bisect", "pr-perf", "pr-perf-report", "pages"}
GITHUB = WORKFLOWS[0].parent.parent
SECURITY = GITHUB.parent / "runners" / "SECURITY.md"
# `uses: owner/repo[/path]@<full commit sha> # vX.Y.Z`, or a local `./` action or reusable workflow
_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>.*))?$")
_PINNED = re.compile(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}")
_VERSION = re.compile(r"v\d+(?:\.\d+){0,2}")


def tool(name):
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is not installed: pip install -e '.[dev]'"
    return path


def test_every_workflow_is_there():
    assert {p.stem for p in WORKFLOWS} >= REQUIRED


def test_workflows_pass_the_github_workflow_schema():
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", *map(str, ACTIONS)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflows_pass_actionlint():
    # actionlint reads .github/actionlint.yaml (the GPU runner labels); it checks `run:` scripts with
    # shellcheck too when shellcheck is installed.
    done = subprocess.run([tool("actionlint"), *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120,
                          cwd=WORKFLOWS[0].parent.parent.parent)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_linters_catch_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }}\n"
                      "        uses: actions/checkout@v4\n")
    assert subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
                          capture_output=True).returncode != 0
    assert subprocess.run([tool("actionlint"), str(broken)], capture_output=True).returncode != 0


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_least_privilege_and_no_pull_request_target(path):
    workflow = load(path)
    assert workflow.get("permissions") == {"contents": "read"}, f"{path.name}: top-level permissions must be read-only"
    assert not {"pull_request_target", "issue_comment"} & set(triggers(workflow))
    for name, job in workflow["jobs"].items():
        for scope, level in (job.get("permissions") or {}).items():
            assert level in ("read", "write", "none"), f"{path.name}:{name}: {scope}: {level}"
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout") and "ref" not in step.get("with", {}):
                assert step["with"]["persist-credentials"] is False, f"{path.name}:{name}: checkout keeps the token"


def test_gpu_jobs_run_self_hosted_and_upload_their_record_even_when_the_run_failed():
    for stem in ("benchmark", "bisect", "pr-perf"):
        workflow = load(next(p for p in WORKFLOWS if p.stem == stem))
        (job,) = [j for j in workflow["jobs"].values() if "steps" in j]
        runs_on = job["runs-on"]  # labels of a registered runner, or (PERFCI_RUNNERS=arc) an ARC scale set's name
        assert runs_on.startswith("${{ vars.PERFCI_RUNNERS == 'arc' && ") and '["self-hosted","linux",' in runs_on
        assert "group" in job["concurrency"]
        upload = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
        assert upload and upload[-1]["if"] == "always()" and upload[-1]["with"]["name"].startswith("perfci-run-")
        assert any("perfci doctor" in s.get("run", "") for s in job["steps"])  # preflight


def test_pr_perf_never_runs_fork_code_and_needs_a_label():
    workflow = load(next(p for p in WORKFLOWS if p.stem == "pr-perf"))
    assert triggers(workflow) == {"pull_request": {"types": ["labeled"]}}
    condition = workflow["jobs"]["perf"]["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert "github.event.label.name == 'perf'" in condition


def test_writers_of_the_data_location_take_turns():
    for stem, job in (("watch", "plan"), ("ingest", "ingest")):
        workflow = load(next(p for p in WORKFLOWS if p.stem == stem))
        assert workflow["jobs"][job]["concurrency"] == {"group": "perfci-data", "cancel-in-progress": False}
        assert any("git -C data push" in s for s in run_scripts({"jobs": {job: workflow["jobs"][job]}}))
    for stem in ("benchmark", "bisect", "pr-perf", "pages"):
        for script in run_scripts(load(next(p for p in WORKFLOWS if p.stem == stem))):
            assert "git -C data push" not in script and "data push" not in script, stem


def test_run_steps_call_only_perfci_commands_and_options_that_exist():
    calls = all_calls()
    assert {c.path for c in calls} >= {("watch",), ("plan",), ("run",), ("doctor",), ("detect",), ("data", "push"),
                                       ("data", "pull"), ("compare",), ("report",), ("dashboard",),
                                       ("bisect",)}  # fmt: skip
    for call in calls:
        assert call.command is not None, f"{call.where}: no command perfci {' '.join(call.path)}"
        unknown = call.options - option_names(call.command)
        assert not unknown, f"{call.where}: perfci {' '.join(call.path)} has no option {sorted(unknown)}"


def test_the_call_parser_finds_calls_in_substitutions_and_pipes():
    script = 'm="$(perfci plan --config w.toml --matrix)"\nperfci data push a.json \\\n  --data d | tee x\nperfci nope'
    calls = perfci_calls("t", script)
    assert [c.path for c in calls] == [("plan",), ("data", "push"), ("nope",)]
    assert calls[0].options == {"--config", "--matrix"} and calls[1].args == ("a.json", "--data", "d")
    assert calls[2].command is None


def unpinned(text: str) -> list[str]:
    """The `uses:` lines of a workflow or action file that are not pinned by full commit SHA with the version
    in a comment (local `./` actions and workflows excepted)."""
    bad = []
    for line in text.splitlines():
        match = _USES.match(line)
        if match is None or match["ref"].startswith("./"):
            continue
        if not _PINNED.fullmatch(match["ref"]) or not _VERSION.fullmatch((match["comment"] or "").strip()):
            bad.append(line.strip())
    return bad


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: p.name if p in WORKFLOWS else p.parent.name)
def test_actions_are_pinned_by_full_commit_sha_with_their_version(path):
    text = path.read_text()
    assert "uses:" in text or path in ACTIONS
    assert unpinned(text) == [], f"{path.name}: pin each action as owner/repo@<40-hex sha> # vX.Y.Z"


def test_an_unpinned_action_is_refused():
    sha = "11d5960a326750d5838078e36cf38b85af677262"
    assert unpinned(f"      - uses: actions/checkout@{sha} # v4.4.0\n    uses: ./.github/workflows/x.yml") == []
    for line in ("- uses: actions/checkout@v4", f"- uses: actions/checkout@{sha}", "uses: actions/checkout@main",
                 f"- uses: actions/checkout@{sha[:12]} # v4.4.0", f"uses: actions/checkout@{sha} # latest"):
        assert unpinned(line) == [line], line


def test_dependabot_updates_the_pinned_actions_and_the_python_dependencies():
    path = GITHUB / "dependabot.yml"
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    updates = {u["package-ecosystem"]: u for u in load(path)["updates"]}
    assert set(updates) == {"github-actions", "pip"}
    assert "/.github/actions/setup-perfci" in updates["github-actions"]["directories"]


def _runs_pull_request_code(workflow: dict) -> bool:
    return bool({"pull_request", "pull_request_target"} & set(triggers(workflow)))


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_no_job_that_runs_pull_request_code_can_write(path):
    workflow = load(path)
    if not _runs_pull_request_code(workflow):
        return
    for name, job in workflow["jobs"].items():
        granted = job.get("permissions", workflow.get("permissions"))
        assert isinstance(granted, dict), f"{path.name}:{name}: say its permissions"
        assert "write" not in granted.values(), f"{path.name}:{name} runs pull request code: {granted}"
        assert "uses" not in job, f"{path.name}:{name}: a called workflow would run with the pull request's code"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_run_jobs_never_check_out_or_run_the_pull_request(path):
    workflow = load(path)
    if "workflow_run" not in triggers(workflow):
        return
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout"):
                given = step.get("with", {})
                assert "repository" not in given and given.get("ref") in (None, "perfci-data"), f"{path.name}:{name}"
        assert "${{ github.event.workflow_run" not in " ".join(s.get("run", "") for s in job.get("steps", [])), (
            f"{path.name}:{name}: event text reaches scripts through env:")  # fmt: skip


def _self_hosted(job: dict) -> bool:
    return "self-hosted" in str(job.get("runs-on", ""))


def _allow_list() -> dict[str, set[str]]:
    """runners/SECURITY.md's table of runner groups: group → the workflow files it admits."""
    groups = {}
    for line in SECURITY.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`perfci-gpu[\w-]*`", cells[0]):
            groups[cells[0].strip("`")] = set(re.findall(r"\.github/workflows/([\w-]+\.yml)@refs/heads/main", cells[2]))
    return groups


def test_every_self_hosted_job_is_in_a_documented_runner_group():
    groups = _allow_list()
    assert set(groups) == {"perfci-gpu", "perfci-gpu-pr"}
    pinned = groups["perfci-gpu"]
    self_hosted = {p.name for p in WORKFLOWS if any(_self_hosted(j) for j in load(p)["jobs"].values())}
    assert self_hosted == pinned | {"pr-perf.yml"}
    for name in pinned:  # a pinned ref admits runs of the default branch: never a pull request's
        workflow = load(GITHUB / "workflows" / name)
        assert not _runs_pull_request_code(workflow), name
        (job,) = [j for j in workflow["jobs"].values() if _self_hosted(j)]
        assert '"self-hosted","linux",' in job["runs-on"] and "-pr" not in job["runs-on"]
    pr = load(GITHUB / "workflows" / "pr-perf.yml")["jobs"]["perf"]["runs-on"]
    assert "'h100-pr'" in pr and '"h100-pr"' in pr  # its own runners, registered or ARC


def test_the_security_guide_names_the_settings_that_protect_the_runners():
    text = " ".join(SECURITY.read_text().split())
    for setting in ("Require approval for all outside collaborators", "--ephemeral", "--runnergroup",
                    "Allow public repositories", "refs/pull/N/merge", "Selected workflows"):  # fmt: skip
        assert setting.lower() in text.lower(), setting


_TOLERATED = re.compile(r"perfci\s+(?P<command>[\w-]+)[^\n]*\|\|\s*\[\s*\$\?\s*-eq\s*(?P<code>\d+)\s*\]")
_STATUS_CASE = re.compile(r'\[\s*"\$status"\s*-eq\s*(?P<code>\d+)\s*\]')


def test_workflows_let_through_only_the_exit_codes_whose_meaning_is_news():
    """Exit codes are a contract (docs/cli.md): a step may go on after 1 from detect or confirm (a regression
    was found, or confirmed) or after 4 from watch (a source is down), and after nothing else;
    continue-on-error, which lets every code through, never wraps a perfci step."""
    from perfci.errors import EXIT_EXTERNAL, EXIT_REGRESSION

    seen = set()
    for path in WORKFLOWS:
        for job in load(path)["jobs"].values():
            for step in job.get("steps", []):
                script = step.get("run", "")
                if "perfci " in script:
                    assert not step.get("continue-on-error"), f"{path.name}: {step.get('name')}"
                for match in _TOLERATED.finditer(script):
                    assert match["command"] in ("detect", "confirm") and int(match["code"]) == EXIT_REGRESSION, match[0]
                    seen.add(match["command"])
                if "perfci watch" in script:
                    assert [int(m["code"]) for m in _STATUS_CASE.finditer(script)] == [EXIT_EXTERNAL]
                    seen.add("watch")
    assert seen == {"detect", "confirm", "watch"}
