from perfci.config import load_suite
from perfci.measure.suites import expand, load_levels


def test_smoke_points_in_order():
    labels = [(p.workload.name, p.load.label) for p in expand(load_suite("smoke"))]
    assert labels == [("short", "sync"), ("short", "c=4"), ("short", "r=4/s poisson"), ("short-chat", "c=2")]


def test_sweep_expands_to_sync_throughput_and_pending_rates():
    advisor = load_suite("advisor")
    levels = load_levels(advisor.workloads[0].load)
    assert [lv.kind for lv in levels[:2]] == ["synchronous", "throughput"]
    pending = levels[2:]
    assert len(pending) == 10 and all(lv.pending for lv in pending)
    assert [lv.sweep_slot for lv in pending] == list(range(10))


def test_repeats_interleave_and_seeds_differ_per_level_and_repeat():
    suite = load_suite("advisor")
    points = expand(suite)
    assert len(points) == 3 * (12 + 4 + 3)
    assert [p.repeat for p in points[:19]] == [0] * 19
    seeds = {(p.workload.name, p.load.label, p.repeat): p.seed for p in points if not p.load.pending}
    assert len(set(seeds.values())) == len(seeds)
    # The same point of another build gets the same prompts.
    assert [p.seed for p in expand(suite)] == [p.seed for p in points]


def test_resolved_sweep_level():
    plan = expand(load_suite("advisor"))[2]
    resolved = plan.resolved(3.5)
    assert not resolved.load.pending and resolved.load.value == 3.5
    assert resolved.load.label == "r=3.5/s constant"


def test_startup_suite_has_no_points():
    assert expand(load_suite("startup")) == []
