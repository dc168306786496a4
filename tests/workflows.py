"""Reading .github/: the workflow files, their `run:` scripts, and the perfci commands those scripts call."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from perfci.cli.main import cli

GITHUB = Path(__file__).resolve().parent.parent / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
ACTIONS = sorted((GITHUB / "actions").glob("*/action.yml"))
# A perfci call: at the start of a line or after | ; & ( or $( , up to the end of that command.
_CALL = re.compile(r"(?:^|[|;&(]|\$\()\s*perfci\s+([^|;&()<>\n]*)", re.MULTILINE)


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict) -> dict:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as true
    return {on: None} if isinstance(on, str) else {k: None for k in on} if isinstance(on, list) else on


def run_scripts(doc: dict) -> list[str]:
    """Every `run:` script of a workflow's jobs or a composite action's steps."""
    jobs = doc.get("jobs", {}).values() if "jobs" in doc else [doc.get("runs", {})]
    return [step["run"] for job in jobs for step in job.get("steps", []) if "run" in step]


@dataclass(frozen=True)
class Call:
    where: str
    path: tuple[str, ...]  # the command path, e.g. ("data", "push")
    args: tuple[str, ...]  # what follows it
    command: click.Command | None  # None: no such command in perfci.cli.main

    @property
    def options(self) -> set[str]:
        return {a.split("=", 1)[0] for a in self.args if a.startswith("-") and a != "-"}


def perfci_calls(where: str, script: str) -> list[Call]:
    script = script.replace("\\\n", " ")
    calls = []
    for match in _CALL.finditer(script):
        tokens = shlex.split(match.group(1))
        command: click.Command | None = cli
        path: list[str] = []
        while isinstance(command, click.Group) and tokens and not tokens[0].startswith("-"):
            path.append(tokens.pop(0))
            command = command.commands.get(path[-1])
        if isinstance(command, click.Group) and not command.invoke_without_command:
            command = None  # a group called without one of its commands
        calls.append(Call(where, tuple(path), tuple(tokens), command))
    return calls


def option_names(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names |= set(param.opts) | set(param.secondary_opts)
    return names


def all_calls() -> list[Call]:
    return [call for path in WORKFLOWS + ACTIONS for script in run_scripts(load(path))
            for call in perfci_calls(path.name, script)]  # fmt: skip
