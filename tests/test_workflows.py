"""The GitHub Actions workflows, checked offline: schema, actionlint, the policies they must keep, and that
every perfci command their `run:` steps call exists, with options it has."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workflows import ACTIONS, WORKFLOWS, all_calls, load, option_names, perfci_calls, run_scripts, triggers

BIN = Path(sys.executable).parent
REQUIRED = {"ci", "watch", "benchmark", "ingest", "bisect", "pr-perf", "pages"}


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
