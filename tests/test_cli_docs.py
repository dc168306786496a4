"""docs/cli.md is generated from the command tree and checked here; `perfci --help` shows the exit codes; shell
completion works as docs/cli.md says; tables print user data as it is."""

from __future__ import annotations

import io
from pathlib import Path

import click
from click.testing import CliRunner
from rich.console import Console

from perfci.cli import docs as cli_docs
from perfci.cli.main import EXIT_CODES, cli
from perfci.report import tables
from perfci.store.records import RunRecord

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_docs_cli_md_is_in_step_with_the_command_tree():
    text = DOC.read_text()
    assert cli_docs.render(text) == text, "docs/cli.md is out of date: run `python -m perfci.cli.docs`"


def test_docs_cli_md_names_every_command_and_option():
    text = DOC.read_text()
    for path, command, _ in cli_docs.commands():
        assert f"### `{path}`" in text
        for param in command.params:
            if isinstance(param, click.Option):
                assert any(opt in text for opt in param.opts), (path, param.opts)


def test_a_changed_help_text_puts_docs_cli_md_out_of_step(monkeypatch):
    text = DOC.read_text()
    monkeypatch.setattr(cli.commands["show"], "help", "List stored runs, oldest first.")
    assert cli_docs.render(text) != text


def test_help_shows_the_exit_code_table():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for code, meaning, _ in EXIT_CODES:
        assert f"{code:>5}  {meaning}" in result.output
    assert "bisect-step follows git bisect run instead: 0 good, 1 bad, 125 skip" in result.output


def test_shell_completion_as_docs_cli_md_describes_it():
    source = CliRunner().invoke(cli, [], prog_name="perfci", env={"_PERFCI_COMPLETE": "bash_source"})
    assert source.exit_code == 0 and "complete -o nosort -F _perfci_completion perfci" in source.output
    completed = CliRunner().invoke(cli, [], prog_name="perfci", env={"_PERFCI_COMPLETE": "bash_complete",
                                                                     "COMP_WORDS": "perfci bi", "COMP_CWORD": "1"})  # fmt: skip
    assert completed.output.split() == ["plain,bisect", "plain,bisect-step"]
    assert "_PERFCI_COMPLETE=bash_source perfci" in DOC.read_text()


def test_tables_print_names_and_errors_with_brackets_as_they_are(record_dict):
    record_dict["suite"]["name"] = "x[/y]"
    record_dict["startups"][0]["model"] = "[bold]m"
    point = record_dict["points"][1]
    point["workload"], point["error"] = "w[/]", "[red]server died[/] at [/x]"
    record = RunRecord.model_validate(record_dict)
    out = io.StringIO()
    console = Console(file=out, width=300, markup=True)  # a console that does read markup in str
    for table in (tables.points_table(record), tables.startup_table(record)):
        console.print(table)
    printed = out.getvalue()
    for literal in ("x[/y] on sim", "[bold]m (cold)", "w[/]", "[red]server died[/] at [/x]"):
        assert literal in printed
