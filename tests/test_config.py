"""Suites: shipped ones load; every kind of bad input names the file, the key path and the value."""

from pathlib import Path

import pytest

from perfci.config import load_suite, shipped_suites, with_sim_overrides
from perfci.errors import ConfigError
from perfci.resources import shipped


@pytest.mark.parametrize("name", shipped_suites())
def test_shipped_suites_load(name):
    suite = load_suite(name)
    assert suite.name == name
    assert len(suite.content_hash) == 16


def test_content_hash_changes_with_the_file(tmp_path):
    a = tmp_path / "a.toml"
    a.write_text((shipped("suites") / "smoke.toml").read_text())
    h1 = load_suite(a).content_hash
    a.write_text(a.read_text().replace("requests = 12", "requests = 13"))
    assert load_suite(a).content_hash != h1


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "suite.toml"
    p.write_text(text)
    return p


BASE = """
name = "t"
[[models]]
name = "m"
[[workloads]]
name = "w"
prompt_tokens = 8
output_tokens = 4
load = { concurrency = [2] }
[run]
requests = 3
"""


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("prompt_tokens = 8", "promt_tokens = 8"), "workloads[0].promt_tokens: unknown key (got 8)"),
        (("concurrency = [2]", "concurrency = [0]"), "workloads[0].load.concurrency[0]"),
        (("concurrency = [2]", "rate = [1.0], arrival = 'burst'"), "workloads[0].load.arrival"),
        (("requests = 3", "requests = 'many'"), "run.requests"),
        (("load = { concurrency = [2] }", "load = {}"), "no load level"),
        (("name = \"w\"", "name = \"w\"\nmodel = \"nope\""), "names model 'nope'"),
        (("[run]\nrequests = 3", "[run]\nwarmup_requests = 1"), "set duration_s or requests"),
        (("output_tokens = 4", "output_tokens = { dist = 'uniform', min = 9, max = 3 }"), "min (9) is greater"),
        (("output_tokens = 4", "output_tokens = { dist = 'normal', mean = 9 }"), "needs std"),
    ],
)
def test_bad_suites_name_file_key_and_value(tmp_path, edit, expected):
    path = write(tmp_path, BASE.replace(*edit))
    with pytest.raises(ConfigError) as e:
        load_suite(path)
    assert str(path) in str(e.value)
    assert expected in str(e.value)
    assert e.value.exit_code == 2


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_suite(write(tmp_path, "name = "))
    with pytest.raises(ConfigError, match="cannot read suite.*shipped suites: .*smoke"):
        load_suite("no-such-suite")


def test_distribution_token_counts(tmp_path):
    suite = load_suite(write(tmp_path, BASE.replace("output_tokens = 4", "output_tokens = { dist = 'uniform', min = 2, max = 9 }")))
    assert suite.workloads[0].output_tokens.max == 9


def test_sim_overrides_are_validated():
    suite = load_suite("smoke")
    assert with_sim_overrides(suite, ["decode_ms_per_token=3", "max_batch=8"]).sim.max_batch == 8
    with pytest.raises(ConfigError, match="decode_ms: unknown key"):
        with_sim_overrides(suite, ["decode_ms=3"])
    with pytest.raises(ConfigError, match="error_rate"):
        with_sim_overrides(suite, ["error_rate=2"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        with_sim_overrides(suite, ["max_batch"])
