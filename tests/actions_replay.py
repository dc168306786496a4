"""Replaying a GitHub Actions workflow here, as GitHub would run it, to find what its structure checks cannot:
a step that fails, an output nobody set, a token without the permission a call needs.

What is real: the workflow files as they are; jobs in `needs:` order, each in a fresh workspace; `if:` with
the status functions; matrices (`fromJSON` of an earlier job's output too); reusable workflows called with
`uses: ./.github/workflows/X.yml`; `run:` steps through bash with GitHub's shells (no `shell:` is `bash -e {0}`, `shell: bash` adds `-o pipefail`), `working-directory`,
`env` at each level, `continue-on-error`; the file commands `GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_PATH`,
`GITHUB_STEP_SUMMARY`; `${{ }}` expressions over the github, env, inputs, vars, secrets, matrix, steps,
needs, job, runner and strategy contexts, evaluated by the small evaluator below (an expression it does not
understand is an error, never an empty string); composite actions (`./.github/actions/X`) step by step; git
remotes (a local bare repository stands for github.com); the GitHub API (tests/github_fake.py over real HTTP),
with each job's token limited to the job's `permissions:` as GitHub limits GITHUB_TOKEN
(a called workflow's job may not ask for more than its caller's).

What is emulated (GitHub's own actions, by what they do): `actions/checkout` copies the repository's working
tree (tracked and untracked, not ignored files) or clones a branch of the bare remote (`ref:`); without
`persist-credentials` or without `contents: write` the clone cannot push. `actions/setup-python` puts this
machine's interpreter of that version on PATH. `actions/upload-artifact` / `download-artifact` use a local
artifact folder per run (another run's artifacts need a token with `actions: read`).
`actions/upload-pages-artifact` / `deploy-pages` (which needs `pages: write` and `id-token: write`) copy the
site to a local folder. `runs-on`, `concurrency` and `timeout-minutes` are evaluated, not enforced: every job
runs on this machine. A test may replace a composite action by a function (`actions=`), or a `run:` step by
another script (`scripts=`): each replacement is named by the test and logged in the step's log.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ReplayError(Exception):
    """The workflow uses something the replay does not understand, or uses it wrongly: never skipped."""


# --- expressions --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:(?P<num>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|0x[0-9a-fA-F]+)|'(?P<str>(?:[^']|'')*)'
                       |(?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\],.*])|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))""", re.X)
_STATUS_FUNCTIONS = {"success", "failure", "always", "cancelled"}


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ReplayError(f"expression {text!r}: cannot read it at {text[pos:]!r}")
        pos = match.end()
        if match.group("num") is not None:
            out.append(("lit", float(int(match.group("num"), 0) if "x" in match.group("num") else match.group("num"))))
        elif match.group("str") is not None:
            out.append(("lit", match.group("str").replace("''", "'")))
        elif match.group("op"):
            out.append(("op", match.group("op")))
        else:
            name = match.group("name")
            out.append(("lit", {"true": True, "false": False, "null": None}[name]) if name in ("true", "false", "null")
                       else ("name", name))  # fmt: skip
    return out


class Strict(dict):
    """A context whose missing keys are errors (steps, needs, inputs), not GitHub's empty string: a misspelt
    step id must fail the replay."""

    def __init__(self, what: str, items: Mapping):
        super().__init__(items)
        self.what = what


def _number(v: Any) -> float:
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(int(v, 0)) if v.strip().lower().startswith("0x") else float(v) if v.strip() else 0.0
        except ValueError:
            return math.nan
    return math.nan


def _equal(a: Any, b: Any) -> bool:
    if type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and not
                              isinstance(a, bool) and not isinstance(b, bool)):  # fmt: skip
        if isinstance(a, str):
            return a.lower() == b.lower()  # GitHub compares strings ignoring case
        if isinstance(a, (dict, list)):
            return a is b
        return a == b
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return _number(a) == _number(b)


def truthy(v: Any) -> bool:
    if isinstance(v, float) and math.isnan(v):
        return False
    return v not in (None, False, 0, "") or isinstance(v, (dict, list))


def to_string(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)
    if isinstance(v, (dict, list)):
        return json.dumps(v, indent=2)
    return str(v)


class Expression:
    """One `${{ }}` expression: parsed, then evaluated against contexts with short-circuit && and ||."""

    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.pos = 0
        self.tree = self._or()
        if self.pos != len(self.toks):
            raise ReplayError(f"expression {text!r}: unexpected {self.toks[self.pos][1]!r}")

    def _peek(self, *ops: str) -> bool:
        return self.pos < len(self.toks) and self.toks[self.pos][0] == "op" and self.toks[self.pos][1] in ops

    def _take(self, op: str) -> None:
        if not self._peek(op):
            raise ReplayError(f"expression {self.text!r}: expected {op!r}")
        self.pos += 1

    def _binary(self, ops: tuple[str, ...], lower: Callable[[], tuple]) -> tuple:
        node = lower()
        while self._peek(*ops):
            op = self.toks[self.pos][1]
            self.pos += 1
            node = ("bin", op, node, lower())
        return node

    def _or(self) -> tuple:
        return self._binary(("||",), self._and)

    def _and(self) -> tuple:
        return self._binary(("&&",), self._eq)

    def _eq(self) -> tuple:
        return self._binary(("==", "!="), self._cmp)

    def _cmp(self) -> tuple:
        return self._binary(("<", "<=", ">", ">="), self._unary)

    def _unary(self) -> tuple:
        if self._peek("!"):
            self.pos += 1
            return ("not", self._unary())
        return self._postfix(self._primary())

    def _primary(self) -> tuple:
        if self.pos >= len(self.toks):
            raise ReplayError(f"expression {self.text!r}: ends too early")
        kind, value = self.toks[self.pos]
        self.pos += 1
        if kind == "lit":
            return ("lit", value)
        if kind == "op" and value == "(":
            node = self._or()
            self._take(")")
            return node
        if kind == "name":
            if self._peek("("):
                self.pos += 1
                args = []
                while not self._peek(")"):
                    args.append(self._or())
                    if not self._peek(")"):
                        self._take(",")
                self._take(")")
                return ("call", value, args)
            return ("ctx", value)
        raise ReplayError(f"expression {self.text!r}: unexpected {value!r}")

    def _postfix(self, node: tuple) -> tuple:
        while self._peek(".", "["):
            if self._peek("."):
                self.pos += 1
                kind, value = self.toks[self.pos] if self.pos < len(self.toks) else ("", "")
                if kind != "name" and value != "*":
                    raise ReplayError(f"expression {self.text!r}: a property name must follow '.'")
                if value == "*":
                    raise ReplayError(f"expression {self.text!r}: object filters (.*) are not supported here")
                self.pos += 1
                node = ("get", node, ("lit", value))
            else:
                self.pos += 1
                index = self._or()
                self._take("]")
                node = ("get", node, index)
        return node

    def uses_status_function(self) -> bool:
        return any(kind == "name" and value in _STATUS_FUNCTIONS and i + 1 < len(self.toks)
                   and self.toks[i + 1] == ("op", "(") for i, (kind, value) in enumerate(self.toks))  # fmt: skip

    def evaluate(self, contexts: Mapping[str, Any], status: Callable[[str], bool] | None = None) -> Any:
        return self._eval(self.tree, contexts, status)

    def _eval(self, node: tuple, ctx: Mapping[str, Any], status) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "ctx":
            if node[1] not in ctx:
                raise ReplayError(f"expression {self.text!r}: no context {node[1]!r} here (known: {sorted(ctx)})")
            return ctx[node[1]]
        if kind == "get":
            base = self._eval(node[1], ctx, status)
            key = self._eval(node[2], ctx, status)
            if isinstance(base, list):
                index = _number(key)
                return base[int(index)] if not math.isnan(index) and 0 <= index < len(base) else None
            if isinstance(base, dict):
                if isinstance(base, Strict) and key not in base:
                    raise ReplayError(f"expression {self.text!r}: {base.what} has no {key!r} (known: {sorted(base)})")
                matches = [v for k, v in base.items() if isinstance(key, str) and k.lower() == key.lower()]
                return matches[0] if matches else None
            return None
        if kind == "not":
            return not truthy(self._eval(node[1], ctx, status))
        if kind == "bin":
            op = node[1]
            left = self._eval(node[2], ctx, status)
            if op == "&&":
                return self._eval(node[3], ctx, status) if truthy(left) else left
            if op == "||":
                return left if truthy(left) else self._eval(node[3], ctx, status)
            right = self._eval(node[3], ctx, status)
            if op == "==":
                return _equal(left, right)
            if op == "!=":
                return not _equal(left, right)
            if isinstance(left, str) and isinstance(right, str):
                a, b = left.lower(), right.lower()
            else:
                a, b = _number(left), _number(right)
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        if kind == "call":
            name = node[1]
            if name in _STATUS_FUNCTIONS:
                if status is None:
                    raise ReplayError(f"expression {self.text!r}: {name}() only belongs in an `if:`")
                return status(name)
            args = [self._eval(a, ctx, status) for a in node[2]]
            return _function(self.text, name, args)
        raise AssertionError(kind)


def _function(text: str, name: str, args: list[Any]) -> Any:
    if name == "fromJSON":
        try:
            value = json.loads(to_string(args[0]))
        except json.JSONDecodeError as e:
            raise ReplayError(f"expression {text!r}: fromJSON of {args[0]!r}: {e}") from None
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if name == "toJSON":
        return json.dumps(args[0], indent=2)
    if name == "format":
        values = [to_string(a) for a in args[1:]]
        return re.sub(r"\{(\d+)\}", lambda m: values[int(m.group(1))], to_string(args[0]).replace("{{", "\0")
                      ).replace("\0", "{").replace("}}", "}")  # fmt: skip
    if name == "contains":
        haystack, needle = args
        if isinstance(haystack, list):
            return any(_equal(item, needle) for item in haystack)
        return to_string(needle).lower() in to_string(haystack).lower()
    if name == "startsWith":
        return to_string(args[0]).lower().startswith(to_string(args[1]).lower())
    if name == "endsWith":
        return to_string(args[0]).lower().endswith(to_string(args[1]).lower())
    if name == "join":
        sep = to_string(args[1]) if len(args) > 1 else ","
        return sep.join(to_string(a) for a in args[0]) if isinstance(args[0], list) else to_string(args[0])
    raise ReplayError(f"expression {text!r}: function {name}() is not supported by the replay")


_WHOLE = re.compile(r"^\s*\$\{\{(.*?)\}\}\s*$", re.S)
_PART = re.compile(r"\$\{\{(.*?)\}\}", re.S)


def substitute(value: Any, contexts: Mapping[str, Any]) -> Any:
    """A YAML value with its `${{ }}` evaluated: a whole-value expression keeps its type (an object from
    fromJSON stays one); expressions inside a longer string become text."""
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole and "${{" not in whole.group(1):
            return Expression(whole.group(1)).evaluate(contexts)
        return _PART.sub(lambda m: to_string(Expression(m.group(1)).evaluate(contexts)), value)
    if isinstance(value, list):
        return [substitute(v, contexts) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, contexts) for k, v in value.items()}
    return value


def condition(text: Any, contexts: Mapping[str, Any], status: Callable[[str], bool]) -> bool:
    """An `if:`: `${{ }}` optional; without a status function GitHub reads it as `success() && (...)`."""
    if text is None:
        return status("success")
    if isinstance(text, bool):
        return text and status("success")
    whole = _WHOLE.match(str(text))
    expression = Expression(whole.group(1) if whole else str(text))
    value = truthy(expression.evaluate(contexts, status))
    return value if expression.uses_status_function() else value and status("success")


# --- runs ---------------------------------------------------------------------------------------------------

LEVELS = {"none": 0, "read": 1, "write": 2}
SCOPES = ("actions", "attestations", "checks", "contents", "deployments", "discussions", "id-token", "issues",
          "models", "packages", "pages", "pull-requests", "repository-projects", "security-events", "statuses")  # fmt: skip
SHELLS = {None: ["bash", "-e", "{0}"], "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
          "sh": ["sh", "-e", "{0}"], "python": ["python", "{0}"]}  # fmt: skip
STEP_TIMEOUT_S = 300


def permissions(block: Any) -> dict[str, str]:
    """A `permissions:` block as scope → level; GitHub's default for a workflow without one is the
    restricted set (contents and packages read)."""
    if block is None:
        block = {"contents": "read", "packages": "read"}
    if block in ("read-all", "write-all"):
        return dict.fromkeys(SCOPES, block.removesuffix("-all"))
    if not isinstance(block, dict):
        raise ReplayError(f"permissions: cannot read {block!r}")
    unknown = set(block) - set(SCOPES)
    if unknown:
        raise ReplayError(f"permissions: unknown scope(s) {sorted(unknown)}")
    return {scope: block.get(scope, "none") for scope in SCOPES}


def granted(block: Any, cap: dict[str, str] | None, where: str) -> dict[str, str]:
    """A job's token permissions. In a called workflow a job without a block has its caller's; one asking
    for more than its caller has stops the run, as GitHub does ("is requesting …, but is only allowed …")."""
    if cap is None:
        return permissions(block)
    if block is None:
        return dict(cap)
    asked = permissions(block)
    over = {s: (asked[s], cap[s]) for s in SCOPES if LEVELS[asked[s]] > LEVELS[cap[s]]}
    if over:
        raise ReplayError(f"{where}: the nested job is requesting {over} (asked, allowed), more than its caller has")
    return asked


@dataclass
class Step:
    name: str
    outcome: str  # success | failure | skipped
    conclusion: str
    exit_code: int | None
    log: str
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Job:
    workflow: str
    name: str
    result: str  # success | failure | skipped
    permissions: dict[str, str]
    runs_on: Any = None
    steps: list[Step] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    matrix: dict | None = None
    called: Run | None = None  # a reusable workflow's run

    def step(self, name: str) -> Step:
        found = [s for s in self.steps if s.name == name]
        if not found:
            raise KeyError(f"{self.workflow}/{self.name}: no step {name!r} (steps: {[s.name for s in self.steps]})")
        return found[0]

    def failures(self) -> str:
        if self.called is not None:
            return self.called.failures()
        return "\n".join(f"--- {self.workflow}/{self.name} step {s.name!r} failed (exit {s.exit_code}):\n{s.log[-6000:]}"
                         for s in self.steps if s.outcome == "failure")  # fmt: skip


@dataclass
class Run:
    workflow: str
    run_id: int
    jobs: dict[str, list[Job]] = field(default_factory=dict)

    def job(self, name: str, index: int = 0) -> Job:
        return self.jobs[name][index]

    @property
    def result(self) -> str:
        results = {j.result for js in self.jobs.values() for j in js}
        return "failure" if "failure" in results else "success"

    def all_jobs(self) -> list[Job]:
        out = []
        for js in self.jobs.values():
            for j in js:
                out.append(j)
                if j.called is not None:
                    out += j.called.all_jobs()
        return out

    def failures(self) -> str:
        return "\n".join(j.failures() for js in self.jobs.values() for j in js if j.result == "failure")


@dataclass
class ActionCall:
    """What a replacement for an action gets: its inputs, the workspace, and the file commands it may use."""

    uses: str
    inputs: dict[str, str]
    workspace: Path
    env: dict[str, str]
    path: list[str]
    exported: dict[str, str]
    log: list[str]

    def add_path(self, directory: str) -> None:
        self.path.insert(0, directory)

    def set_env(self, name: str, value: str) -> None:
        self.exported[name] = value


ActionReplacement = Callable[[ActionCall], dict[str, str]]


def _file_commands(path: Path) -> dict[str, str]:
    """GITHUB_ENV / GITHUB_OUTPUT: NAME=value lines and NAME<<DELIMITER blocks."""
    out: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            value = []
            while i < len(lines) and lines[i] != delimiter:
                value.append(lines[i])
                i += 1
            if i == len(lines):
                raise ReplayError(f"{path.name}: no closing {delimiter!r} for {name!r}")
            i += 1
            out[name] = "\n".join(value)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        else:
            raise ReplayError(f"{path.name}: cannot read the line {line!r}")
    return out


class Replay:
    """Runs workflows of the repository at `source` under `root`, against `github` (a FakeGitHub). `origin` is
    a bare git repository standing for the GitHub remote (branches such as perfci-data)."""

    def __init__(self, *, source: Path, root: Path, github, origin: Path, repository: str,
                 vars: Mapping[str, str] | None = None, secrets: Mapping[str, str] | None = None,
                 actions: Mapping[str, ActionReplacement] | None = None,
                 scripts: Mapping[tuple[str, str, str], str] | None = None,
                 files: Mapping[str, str] | None = None, inputs: Mapping[str, Mapping[str, str]] | None = None,
                 workflows: Mapping[str, str] | None = None, interpreter_bin: Path | None = None):  # fmt: skip
        self.source, self.root, self.github, self.origin = source, root, github, origin
        self.repository = repository
        self.vars = dict(vars or {})
        self.secrets = dict(secrets or {})
        self.actions = dict(actions or {})
        self.scripts = dict(scripts or {})  # (workflow stem, job, step name) → replacement script
        self.files = dict(files or {})  # path in the checkout → text: the repository as the test arranges it
        self.workflows = dict(workflows or {})  # workflow file name → its text as the test edited it
        self.forced_inputs = {k: dict(v) for k, v in (inputs or {}).items()}  # called workflow stem → inputs
        self.interpreter_bin = interpreter_bin or Path(sys.executable).parent
        self.artifacts = root / "artifacts"
        self.pages = root / "pages"
        self._run_ids = itertools.count(7001)
        self._jobs = itertools.count(1)
        self.used: set[str] = set()  # replacements actually used (a test can check none went stale)

    # --- workflows and jobs ---

    def run(self, workflow: str, *, event: str, payload: Mapping | None = None,
            inputs: Mapping[str, Any] | None = None, ref: str = "refs/heads/main", sha: str = "a" * 40) -> Run:  # fmt: skip
        run_id = next(self._run_ids)
        github = {
            "event_name": event, "event": dict(payload or {}), "repository": self.repository,
            "repository_owner": self.repository.split("/")[0], "run_id": str(run_id), "run_number": "1",
            "run_attempt": "1", "ref": ref, "ref_name": ref.rsplit("/", 1)[-1], "sha": sha, "actor": "octocat",
            "server_url": self.github.server.url_for("/").rstrip("/"), "api_url": self.github.api,
            "workflow": "", "job": "", "token": "", "workspace": "", "action": "",
            "head_ref": "", "base_ref": "", "triggering_actor": "octocat", "repositoryUrl": "",
        }  # fmt: skip
        return self._workflow(workflow, github, event=event, inputs=dict(inputs or {}), cap=None, run_id=run_id)

    def _workflow(self, name: str, github: dict, *, event: str, inputs: dict, cap, run_id: int) -> Run:
        path = self.source / ".github" / "workflows" / name
        doc = yaml.safe_load(self.workflows.get(name) or path.read_text())
        on = doc.get("on", doc.get(True))
        on = {on: None} if isinstance(on, str) else dict.fromkeys(on) if isinstance(on, list) else on
        trigger = "workflow_call" if cap is not None else event
        if trigger not in on:
            raise ReplayError(f"{name}: no trigger {trigger!r} (it has {sorted(on)})")
        if trigger == "workflow_call" and (on.get(trigger) or {}).get("outputs"):
            raise ReplayError(f"{name}: outputs of a called workflow are not replayed")
        github = github | {"workflow": doc.get("name", name)}
        forced = self.forced_inputs.get(Path(name).stem, {})
        declared = (on.get(trigger) or {}).get("inputs") or {}
        # The inputs context holds the inputs this trigger declares; those only another trigger declares are
        # empty, as on GitHub. Any other name is an error.
        others = {k for t in ("workflow_call", "workflow_dispatch") for k in ((on.get(t) or {}).get("inputs") or {})}
        given = self._inputs(name, declared, inputs | forced)
        ctx_inputs = Strict(f"{name}: inputs", dict.fromkeys(others - set(given)) | given)
        run = Run(name, run_id)
        jobs = doc.get("jobs") or {}
        order = self._order(name, jobs)
        for job_name in order:
            spec = jobs[job_name]
            needs = [spec["needs"]] if isinstance(spec.get("needs"), str) else spec.get("needs") or []
            needs_ctx = Strict(f"{name}/{job_name}: needs", {
                n: {"result": _aggregate(run.jobs[n]), "outputs": run.jobs[n][0].outputs if len(run.jobs[n]) == 1
                    else {}} for n in needs})  # fmt: skip
            base = {"github": github, "inputs": ctx_inputs, "vars": self.vars, "needs": needs_ctx,
                    "secrets": self.secrets, "env": doc.get("env") or {}}  # fmt: skip

            def status(fn: str, needs_ctx=needs_ctx) -> bool:
                failed = any(n["result"] in ("failure", "cancelled") for n in needs_ctx.values())
                skipped = any(n["result"] == "skipped" for n in needs_ctx.values())
                return {"always": True, "cancelled": False, "failure": failed,
                        "success": not failed and not skipped}[fn]  # fmt: skip

            perms = granted(spec.get("permissions", doc.get("permissions")), cap, f"{name}/{job_name}")
            if not condition(spec.get("if"), base | {"matrix": {}, "strategy": {}, "job": {}, "runner": {},
                                                            "steps": {}}, status):  # fmt: skip
                run.jobs[job_name] = [Job(name, job_name, "skipped", perms)]
                continue
            run.jobs[job_name] = [self._job(name, doc, job_name, spec, base | {"matrix": m, "strategy": {}},
                                            perms, matrix=m, run_id=run_id)
                                  for m in self._matrix(spec, base)]  # fmt: skip
        return run

    def _inputs(self, where: str, declared: dict, given: dict) -> dict:
        unknown = set(given) - set(declared)
        if unknown:
            raise ReplayError(f"{where}: no input(s) {sorted(unknown)} (declared: {sorted(declared)})")
        out = {}
        for key, spec in declared.items():
            spec = spec or {}
            if key in given:
                value = given[key]
            elif "default" in spec:
                value = spec["default"]
            elif spec.get("required"):
                raise ReplayError(f"{where}: input {key!r} is required")
            else:
                value = "" if spec.get("type", "string") in ("string", "choice") else None
            if spec.get("type") == "choice" and value not in spec.get("options", []):
                raise ReplayError(f"{where}: input {key!r}: {value!r} is not one of {spec.get('options')}")
            if spec.get("type") == "boolean":
                value = value in (True, "true")
            out[key] = value
        return out

    def _order(self, where: str, jobs: dict) -> list[str]:
        done: list[str] = []
        while len(done) < len(jobs):
            ready = [n for n, j in jobs.items() if n not in done and all(
                d in done for d in ([j["needs"]] if isinstance(j.get("needs"), str) else j.get("needs") or []))]  # fmt: skip
            if not ready:
                raise ReplayError(f"{where}: `needs:` has a cycle or names a missing job")
            done.append(ready[0])
        return done

    def _matrix(self, spec: dict, base: dict) -> list[dict]:
        strategy = spec.get("strategy") or {}
        if "matrix" not in strategy:
            return [{}]
        matrix = substitute(strategy["matrix"], base | {"matrix": {}})
        if not isinstance(matrix, dict):
            raise ReplayError(f"matrix is not an object: {matrix!r}")
        include = matrix.pop("include", []) or []
        exclude = matrix.pop("exclude", []) or []
        combos = [dict(zip(matrix, values, strict=True)) for values in itertools.product(*matrix.values())] if matrix else []
        combos = [c for c in combos if not any(all(c.get(k) == v for k, v in e.items()) for e in exclude)]
        for extra in include:
            matched = [c for c in combos if all(c.get(k) == v for k, v in extra.items() if k in matrix)]
            if matched and any(k in matrix for k in extra):
                for c in matched:
                    c.update(extra)
            else:
                combos.append(dict(extra))
        if not combos:
            raise ReplayError("the matrix has no combination")
        return combos

    def _job(self, workflow: str, doc: dict, name: str, spec: dict, ctx: dict, perms: dict, *, matrix: dict,
             run_id: int) -> Job:  # fmt: skip
        if "uses" in spec:
            callee = spec["uses"]
            if not callee.startswith("./.github/workflows/"):
                raise ReplayError(f"{workflow}/{name}: only local reusable workflows are replayed, not {callee!r}")
            with_ = substitute(spec.get("with") or {}, ctx)
            job = Job(workflow, name, "success", perms, matrix=matrix)
            job.called = self._workflow(Path(callee).name, ctx["github"], event=ctx["github"]["event_name"],
                                        inputs=with_, cap=perms, run_id=run_id)  # fmt: skip
            job.result = job.called.result
            return job
        number = next(self._jobs)
        home = self.root / "runs" / str(run_id) / f"{number}-{name}"
        workspace, temp = home / "work", home / "temp"
        workspace.mkdir(parents=True)
        temp.mkdir()
        token = self.github.mint_token({s: level for s, level in perms.items() if level != "none"})
        payload = home / "event.json"
        payload.write_text(json.dumps(ctx["github"]["event"]))
        github = ctx["github"] | {"job": name, "token": token, "workspace": str(workspace),
                                  "event_path": str(payload)}  # fmt: skip
        runner = {"os": "Linux", "arch": "X64", "temp": str(temp), "tool_cache": str(self.root / "toolcache"),
                  "name": f"replay-{number}", "environment": "self-hosted"}  # fmt: skip
        ctx = ctx | {"github": github, "runner": runner, "job": {"status": "success"}, "steps": {},
                     "secrets": ctx["secrets"] | {"GITHUB_TOKEN": token}}  # fmt: skip
        job = Job(workflow, name, "success", perms, matrix=matrix)
        job.runs_on = substitute(spec.get("runs-on"), ctx)
        substitute({k: spec.get(k) for k in ("concurrency", "timeout-minutes", "continue-on-error")}, ctx)
        env = {k: to_string(v) for k, v in substitute(doc.get("env") or {}, ctx).items()}
        ctx["env"] = env
        env |= {k: to_string(v) for k, v in substitute(spec.get("env") or {}, ctx).items()}
        defaults = ((doc.get("defaults") or {}).get("run") or {}) | ((spec.get("defaults") or {}).get("run") or {})
        base_env = self._base_env() | {
            "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace), "HOME": os.environ["HOME"],
            "GITHUB_REPOSITORY": self.repository, "GITHUB_REPOSITORY_OWNER": self.repository.split("/")[0],
            "GITHUB_RUN_ID": str(run_id), "GITHUB_RUN_NUMBER": "1", "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_SHA": github["sha"], "GITHUB_REF": github["ref"], "GITHUB_REF_NAME": github["ref_name"],
            "GITHUB_EVENT_NAME": github["event_name"], "GITHUB_EVENT_PATH": str(payload), "GITHUB_JOB": name,
            "GITHUB_WORKFLOW": github["workflow"], "GITHUB_ACTOR": "octocat", "GITHUB_API_URL": self.github.api,
            "GITHUB_SERVER_URL": github["server_url"], "RUNNER_TEMP": str(temp), "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
        }  # fmt: skip
        state = _JobState(workflow=Path(workflow).stem, job=job, workspace=workspace, temp=temp, token=token,
                          base_env=base_env, env=env, defaults=defaults, run_id=run_id)  # fmt: skip
        steps_ctx: dict[str, dict] = {}
        self._steps(state, spec.get("steps") or [], ctx, steps_ctx, composite=None)
        job.result = "failure" if state.failed else "success"
        ctx = ctx | {"steps": Strict(f"{workflow}/{name}: steps", steps_ctx)}
        job.outputs = {k: to_string(v) for k, v in substitute(spec.get("outputs") or {}, ctx).items()}
        if isinstance(spec.get("environment"), dict):
            substitute(spec["environment"], ctx)
        return job

    def _base_env(self) -> dict[str, str]:
        # This machine's environment as the runner's, less this test's interpreter (perfci is on PATH only once
        # a step puts it there) and less any GitHub variables of an outer CI.
        ours = {str(self.interpreter_bin), str(Path(sys.executable).parent)}
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GITHUB_", "RUNNER_", "ACTIONS_", "PYTEST_", "INPUT_"))
               and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PERFCI_CACHE_OVERRIDE")}  # fmt: skip
        env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p not in ours)
        return env

    # --- steps ---

    def _steps(self, state: _JobState, steps: list[dict], ctx: dict, steps_ctx: dict, *, composite: str | None) -> None:
        for spec in steps:
            label = spec.get("name") or spec.get("uses") or f"Run {(str(spec.get('run') or '').splitlines() or [''])[0]}"
            label = to_string(substitute(label, ctx | {"steps": steps_ctx}))
            where = f"{state.workflow}/{state.job.name}{' ' + composite if composite else ''} step {label!r}"
            if ("uses" in spec) == ("run" in spec):
                raise ReplayError(f"{where}: a step has either `uses` or `run`")
            sctx = ctx | {"steps": Strict(f"{where}: steps", steps_ctx), "env": ctx["env"] | state.exported}

            def status(fn: str) -> bool:
                return {"always": True, "cancelled": False, "failure": state.failed, "success": not state.failed}[fn]

            if not condition(spec.get("if"), sctx, status):
                step = Step(label, "skipped", "skipped", None, "")
                state.job.steps.append(step)
                if "id" in spec:
                    steps_ctx[spec["id"]] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
                continue
            step_env = {k: to_string(v) for k, v in substitute(spec.get("env") or {}, sctx).items()}
            sctx["env"] = sctx["env"] | step_env
            files = {n: state.temp / f"{n.lower()}-{next(self._jobs)}" for n in
                     ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}  # fmt: skip
            for f in files.values():
                f.touch()
            env = state.base_env | state.env | state.exported | step_env | {n: str(p) for n, p in files.items()}
            env["PATH"] = os.pathsep.join([*state.path, state.base_env["PATH"]])
            started = time.monotonic()
            if "run" in spec:
                step = self._run_step(state, spec, sctx, env, label, where, composite)
            else:
                step = self._uses_step(state, spec, sctx, env, label, where)
            step.seconds = time.monotonic() - started
            # File commands: what the step wrote is read even when it failed, as the runner does.
            for name, value in _file_commands(files["GITHUB_ENV"]).items():
                state.exported[name] = value
            state.path[:0] = reversed([line for line in files["GITHUB_PATH"].read_text().splitlines() if line.strip()])
            step.outputs |= _file_commands(files["GITHUB_OUTPUT"])
            state.job.summary += files["GITHUB_STEP_SUMMARY"].read_text()
            failed = step.outcome == "failure"
            if failed and truthy(substitute(spec.get("continue-on-error", False), sctx)):
                step.conclusion = "success"
            elif failed:
                state.failed = True
            state.job.steps.append(step)
            if "id" in spec:
                steps_ctx[spec["id"]] = {"outputs": step.outputs, "outcome": step.outcome, "conclusion": step.conclusion}

    def _run_step(self, state, spec, ctx, env, label, where, composite) -> Step:
        if composite is not None and "shell" not in spec:
            raise ReplayError(f"{where}: a composite action's run step needs `shell:`")
        script = to_string(substitute(spec["run"], ctx))
        replaced = self.scripts.get((state.workflow, state.job.name, label))
        note = ""
        if replaced is not None:
            self.used.add(f"script:{state.workflow}/{state.job.name}/{label}")
            note = f"[replay] this step's script is replaced by the test: {replaced!r}\n"
            script = replaced
        shell = spec.get("shell", state.defaults.get("shell"))
        if shell not in SHELLS and "{0}" not in str(shell):
            raise ReplayError(f"{where}: shell {shell!r} is not replayed")
        script_file = state.temp / f"step-{next(self._jobs)}.sh"
        script_file.write_text(script)
        argv = [a.replace("{0}", str(script_file)) for a in (SHELLS.get(shell) or str(shell).split())]
        cwd = state.workspace / to_string(substitute(spec.get("working-directory", state.defaults.get(
            "working-directory", ".")), ctx))  # fmt: skip
        if not cwd.is_dir():
            return Step(label, "failure", "failure", None, note + f"no working directory {cwd}")
        try:
            done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=STEP_TIMEOUT_S, stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired as e:
            return Step(label, "failure", "failure", None, note + f"timed out after {e.timeout} s\n{e.output or ''}")
        outcome = "success" if done.returncode == 0 else "failure"
        return Step(label, outcome, outcome, done.returncode, note + done.stdout)

    def _uses_step(self, state, spec, ctx, env, label, where) -> Step:
        uses = spec["uses"]
        with_ = {k: to_string(v) for k, v in substitute(spec.get("with") or {}, ctx).items()}
        log: list[str] = []
        call = ActionCall(uses, with_, state.workspace, env, state.path, state.exported, log)
        try:
            if uses.startswith("./"):
                outputs = self._local_action(state, uses, call, ctx, where)
            else:
                action = uses.split("@", 1)[0]
                emulation = EMULATED.get(action)
                if emulation is None:
                    raise ReplayError(f"{where}: the action {uses!r} is not emulated by the replay")
                _check_inputs(where, action, with_, emulation.inputs)
                outputs = emulation.run(self, state, call)
        except StepFailed as e:
            return Step(label, "failure", "failure", 1, "\n".join([*log, str(e)]))
        return Step(label, "success", "success", 0, "\n".join(log), outputs=dict(outputs))

    def _local_action(self, state, uses: str, call: ActionCall, ctx: dict, where: str) -> dict[str, str]:
        path = state.workspace / uses / "action.yml"
        if not path.exists():
            raise StepFailed(f"{uses}: no action.yml in the workspace (was the repository checked out?)")
        action = yaml.safe_load(path.read_text())
        declared = action.get("inputs") or {}
        _check_inputs(where, uses, call.inputs, set(declared))
        inputs = {k: call.inputs.get(k, to_string((v or {}).get("default", ""))) for k, v in declared.items()}
        missing = [k for k, v in declared.items() if (v or {}).get("required") and k not in call.inputs]
        if missing:
            raise ReplayError(f"{where}: required input(s) {missing} of {uses}")
        if uses in self.actions:
            self.used.add(f"action:{uses}")
            call.log.append(f"[replay] {uses} is replaced by the test's {self.actions[uses].__name__}")
            call.inputs = inputs
            return self.actions[uses](call)
        runs = action.get("runs") or {}
        if runs.get("using") != "composite":
            raise ReplayError(f"{where}: {uses} is not a composite action")
        inner: dict[str, dict] = {}
        before, failed_before = len(state.job.steps), state.failed
        self._steps(state, runs.get("steps") or [], ctx | {"inputs": Strict(f"{uses}: inputs", inputs)}, inner,
                    composite=uses)  # fmt: skip
        inner_steps = state.job.steps[before:]
        del state.job.steps[before:]
        call.log += [f"[{uses}] {s.name}: {s.outcome}\n{s.log}" for s in inner_steps]
        if any(s.conclusion == "failure" for s in inner_steps):
            state.failed = failed_before  # the composite's failure is this step's, decided by the caller
            raise StepFailed(f"{uses}: a step failed")
        octx = ctx | {"steps": Strict(f"{uses}: steps", inner)}
        return {k: to_string(substitute((v or {}).get("value", ""), octx)) for k, v in
                (action.get("outputs") or {}).items()}  # fmt: skip


@dataclass
class _JobState:
    workflow: str
    job: Job
    workspace: Path
    temp: Path
    token: str
    base_env: dict[str, str]
    env: dict[str, str]
    defaults: dict
    run_id: int
    exported: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)
    failed: bool = False


class StepFailed(Exception):
    """The emulated action failed as the real one would (the step fails, the replay goes on)."""


def _aggregate(jobs: list[Job]) -> str:
    results = {j.result for j in jobs}
    return "failure" if "failure" in results else "skipped" if results == {"skipped"} else "success"


def _check_inputs(where: str, action: str, given: Mapping[str, str], known: set[str]) -> None:
    unknown = set(given) - set(known)
    if unknown:
        raise ReplayError(f"{where}: {action} has no input(s) {sorted(unknown)} (known: {sorted(known)})")


# --- GitHub's actions, emulated ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Emulation:
    inputs: set[str]
    run: Callable[[Replay, _JobState, ActionCall], dict[str, str]]


def _inside(workspace: Path, relative: str, what: str) -> Path:
    target = (workspace / relative).resolve()
    if not target.is_relative_to(workspace.resolve()):
        raise StepFailed(f"{what} {relative!r} is outside the workspace")
    return target


def _checkout(replay: Replay, state: _JobState, call: ActionCall) -> dict[str, str]:
    if call.inputs.get("repository", replay.repository) != replay.repository:
        raise ReplayError(f"checkout of another repository ({call.inputs['repository']}) is not replayed")
    dest = _inside(state.workspace, call.inputs.get("path", "."), "checkout path")
    ref = call.inputs.get("ref", "")
    if not ref:
        listed = subprocess.run(["git", "-C", str(replay.source), "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], capture_output=True, check=True).stdout  # fmt: skip
        for name in filter(None, listed.decode().split("\0")):
            if (replay.source / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(replay.source / name, dest / name)
        for name, text in replay.files.items():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_text(text)
        call.log.append(f"copied the working tree into {dest}")
        return {"ref": state.base_env["GITHUB_REF"], "commit": state.base_env["GITHUB_SHA"]}
    if state.job.permissions.get("contents", "none") == "none":
        raise StepFailed("remote: Repository not found (the token has no contents permission)")
    done = subprocess.run(["git", "clone", "--quiet", "--branch", ref, "--single-branch", str(replay.origin),
                           str(dest)], capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise StepFailed(f"git clone --branch {ref}: {done.stderr.strip()}")
    keeps = call.inputs.get("persist-credentials", "true") != "false"
    if not keeps or state.job.permissions.get("contents") != "write":
        # No credentials (or a read-only token) in the clone: GitHub refuses its pushes.
        denied = replay.root / "push-denied" / f"{state.workflow}-{state.job.name}"
        subprocess.run(["git", "-C", str(dest), "remote", "set-url", "--push", "origin", str(denied)], check=True)
    call.log.append(f"cloned {ref} into {dest} ({'can' if keeps else 'cannot'} push)")
    commit = subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    return {"ref": ref, "commit": commit.strip()}


def _setup_python(replay: Replay, state: _JobState, call: ActionCall) -> dict[str, str]:
    version = call.inputs.get("python-version", "")
    if not re.fullmatch(r"3\.\d+", version):
        raise ReplayError(f"setup-python: python-version {version!r} is not replayed (give 3.X)")
    found = shutil.which(f"python{version}", path=state.base_env["PATH"])
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version == here:
        found = getattr(sys, "_base_executable", sys.executable)
    if not found:
        raise StepFailed(f"setup-python: no Python {version} on this machine")
    tools = replay.root / "toolcache" / f"python{version}" / "bin"
    tools.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3", f"python{version}"):
        if not (tools / name).exists():
            (tools / name).symlink_to(found)
    call.add_path(str(tools))
    call.log.append(f"Python {version}: {found}")
    return {"python-version": version, "python-path": str(tools / "python")}


def _upload(replay: Replay, state: _JobState, call: ActionCall) -> dict[str, str]:
    name = call.inputs.get("name", "artifact")
    patterns = [p.strip() for p in call.inputs.get("path", "").splitlines() if p.strip()]
    if not patterns:
        raise ReplayError("upload-artifact: `path` is required")
    if any(p.startswith("!") for p in patterns):
        raise ReplayError("upload-artifact: exclusions are not replayed")
    files = sorted({Path(f) for p in patterns for f in glob.glob(str(_inside(state.workspace, p, "path")),
                                                                 recursive=True) if Path(f).is_file()})  # fmt: skip
    if not files:
        mode = call.inputs.get("if-no-files-found", "warn")
        if mode == "error":
            raise StepFailed(f"upload-artifact: no files found for {patterns}")
        call.log.append(f"{'Warning: ' if mode == 'warn' else ''}no files found for {patterns}; nothing uploaded")
        return {}
    dest = replay.artifacts / str(state.run_id) / name
    if dest.exists() and call.inputs.get("overwrite", "false") != "true":
        raise StepFailed(f"upload-artifact: an artifact named {name!r} already exists in this run (409 Conflict)")
    shutil.rmtree(dest, ignore_errors=True)
    common = Path(os.path.commonpath([f.parent for f in files]))  # the least common ancestor is the root
    for f in files:
        (dest / f.relative_to(common)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / f.relative_to(common))
    call.log.append(f"uploaded {len(files)} file(s) as {name!r}")
    return {"artifact-id": str(abs(hash((state.run_id, name))) % 10**8)}


def _download(replay: Replay, state: _JobState, call: ActionCall) -> dict[str, str]:
    run_id = call.inputs.get("run-id") or str(state.run_id)
    if run_id != str(state.run_id):
        token = call.inputs.get("github-token", "")
        if not token:
            raise ReplayError("download-artifact: run-id of another run needs github-token")
        if LEVELS[replay.github.permissions_of(token).get("actions", "none")] < LEVELS["read"]:
            raise StepFailed("download-artifact: 403 Resource not accessible by integration (actions: read)")
    root = replay.artifacts / run_id
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if "name" in call.inputs:
        chosen = [n for n in names if n == call.inputs["name"]]
        if not chosen:
            raise StepFailed(f"download-artifact: no artifact {call.inputs['name']!r} in run {run_id}")
    else:
        chosen = [n for n in names if fnmatch.fnmatchcase(n, call.inputs.get("pattern", "*"))]
    dest = _inside(state.workspace, call.inputs.get("path", "."), "path")
    merge = "name" in call.inputs or call.inputs.get("merge-multiple", "false") == "true"
    for n in chosen:
        shutil.copytree(root / n, dest if merge else dest / n, dirs_exist_ok=True)
    call.log.append(f"downloaded {chosen} from run {run_id}")
    return {"download-path": str(dest)}


def _upload_pages(replay: Replay, state: _JobState, call: ActionCall) -> dict[str, str]:
    site = _inside(state.workspace, call.inputs.get("path", "_site/"), "path")
    if not site.is_dir():
        raise StepFailed(f"upload-pages-artifact: {site} is not a directory")
    dest = replay.artifacts / str(state.run_id) / call.inputs.get("name", "github-pages")
    dest.mkdir(parents=True)
    with tarfile.open(dest / "artifact.tar", "w") as tar:
        tar.add(site, arcname=".")
    return {"artifact_id": "1"}


def _deploy_pages(replay: Replay, state: _JobState, call: ActionCall) -> dict[str, str]:
    perms = state.job.permissions
    if perms.get("pages") != "write" or perms.get("id-token") != "write":
        raise StepFailed("deploy-pages: needs `pages: write` and `id-token: write`")
    tar = replay.artifacts / str(state.run_id) / call.inputs.get("artifact_name", "github-pages") / "artifact.tar"
    if not tar.exists():
        raise StepFailed("deploy-pages: no github-pages artifact in this run")
    shutil.rmtree(replay.pages, ignore_errors=True)
    with tarfile.open(tar) as archive:
        archive.extractall(replay.pages, filter="data")
    return {"page_url": replay.github.server.url_for("/pages/")}


EMULATED: dict[str, Emulation] = {
    "actions/checkout": Emulation({"repository", "ref", "path", "persist-credentials", "fetch-depth", "token"},
                                  _checkout),  # fmt: skip
    "actions/setup-python": Emulation({"python-version", "cache"}, _setup_python),
    "actions/upload-artifact": Emulation({"name", "path", "if-no-files-found", "retention-days", "overwrite",
                                          "compression-level", "include-hidden-files"}, _upload),  # fmt: skip
    "actions/download-artifact": Emulation({"name", "pattern", "path", "merge-multiple", "run-id", "github-token",
                                            "repository"}, _download),  # fmt: skip
    "actions/upload-pages-artifact": Emulation({"path", "name", "retention-days"}, _upload_pages),
    "actions/deploy-pages": Emulation({"token", "artifact_name", "timeout", "error_count", "reporting_interval",
                                       "preview"}, _deploy_pages),  # fmt: skip
}
