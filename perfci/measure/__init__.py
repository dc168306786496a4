"""One run: a suite's points (suites.py) against one engine build (envs.py, engines/, server.py), load from
loadgen/, per-request samples aggregated into point metrics (aggregate.py), startup phases, hardware and clocks;
runner.py drives it and returns a run record."""
