from perfci.measure import startup
from perfci.measure.engines.sim import SimEngine


def test_durations_marks_and_unreported_time():
    lines = [
        (0.1, "perfci-sim (SIMULATOR) starting"),
        (0.4, "2026-11-26 23:40:01.123 perfci-sim (SIMULATOR) load_weights took 0.300 s"),
        (0.6, "perfci-sim (SIMULATOR) compile took 0.200 s"),
        (0.7, "perfci-sim (SIMULATOR) warmup took 0.100 s"),
        (0.75, "perfci-sim (SIMULATOR) Application startup complete."),
        (0.8, "perfci-sim (SIMULATOR) load_weights took 9.000 s"),  # a later match never overrides the first
    ]
    parsed = startup.parse(lines, SimEngine.patterns)
    assert parsed.values == {"load_weights": 0.3, "compile": 0.2, "warmup": 0.1, "at_server_up": 0.75}
    assert len(parsed.lines) == 5
    phases = startup.finish(parsed, additive=SimEngine.additive_phases, ready_s=1.0, first_token_s=0.05)
    assert phases["at_health_ok"] == 1.0
    assert phases["unreported"] == 0.4
    assert phases["first_token"] == 0.05


def test_nothing_matched_is_all_unreported():
    phases = startup.finish(startup.parse([(1.0, "hello")], SimEngine.patterns), additive=("x",), ready_s=2.0,
                            first_token_s=None)
    assert phases == {"at_health_ok": 2.0, "unreported": 2.0}
