import math

import pytest

from nodekeeper.server import policy, ramp
from nodekeeper.server.errors import ConflictError, InvalidRequestError, NotFoundError
from nodekeeper.server.models import ProcessRecord, ReleaseRecord, RolloutRecord

DAY = ramp.DAY


def test_running_ramp_grows_linearly_and_caps():
    s = ramp.start(now=1000.0, rate_per_day=10.0)
    assert ramp.percent_at(s, 1000.0) == 0
    assert ramp.percent_at(s, 1000.0 + DAY) == pytest.approx(10.0)
    assert ramp.percent_at(s, 1000.0 + 20 * DAY) == 100.0
    assert ramp.phase(s, 1000.0 + DAY) == "running"
    assert ramp.phase(s, 1000.0 + 10 * DAY) == "complete"
    assert ramp.eta_complete(s, 1000.0) == pytest.approx(1000.0 + 10 * DAY)


def test_clock_going_backwards_never_lowers_below_base():
    s = ramp.start(now=1000.0, rate_per_day=10.0, percent=5.0)
    assert ramp.percent_at(s, 500.0) == 5.0


def test_pause_holds_and_resume_continues_from_there():
    s = ramp.start(now=0.0, rate_per_day=24.0)  # 1 % per hour
    paused = ramp.pause(s, now=3600.0)
    assert paused.paused
    assert ramp.percent_at(paused, 10 * 3600.0) == pytest.approx(1.0)
    assert ramp.phase(paused, 99 * 3600.0) == "paused"
    assert ramp.eta_complete(paused, 0) is None
    resumed = ramp.resume(paused, now=10 * 3600.0)
    assert ramp.percent_at(resumed, 11 * 3600.0) == pytest.approx(2.0)
    assert ramp.resume(resumed, now=12 * 3600.0) is resumed  # resume of a running ramp


def test_set_percent_keeps_running_or_paused():
    s = ramp.start(now=0.0, rate_per_day=24.0)
    jumped = ramp.set_percent(s, 50.0, now=3600.0)
    assert ramp.percent_at(jumped, 7200.0) == pytest.approx(51.0)
    held = ramp.set_percent(ramp.pause(s, 0.0), 30.0, now=3600.0)
    assert ramp.percent_at(held, 99_999.0) == 30.0


def test_manual_ramp_never_moves():
    s = ramp.start(now=0.0, rate_per_day=None)
    assert ramp.percent_at(s, 10 * DAY) == 0.0
    assert ramp.eta_complete(s, 0.0) is None


def test_quantize_aligns_all_replicas():
    assert ramp.quantize(125.7, 60.0) == 120.0
    assert ramp.quantize(120.0, 60.0) == 120.0
    assert ramp.quantize(125.7, 0) == 125.7
    assert math.isclose(ramp.quantize(0.26, 0.05), 0.25)


def _process(versions, minimum=None, rollout=None):
    releases = {v: ReleaseRecord("storagenode", v, 0.0) for v in versions}
    ro = None
    if rollout:
        ro = RolloutRecord(1, "storagenode", rollout, "00" * 32, ramp.start(0, 1.0), 0.0)
    return ProcessRecord("storagenode", minimum, releases, ro, None)


def test_policy_minimum_defaults_to_oldest_release():
    p = _process(["1.10.0", "1.9.0", "1.2.3"])
    assert p.minimum == "1.2.3"
    assert p.suggested == "1.2.3"
    assert _process(["1.9.0", "1.10.0"], rollout="1.10.0").suggested == "1.10.0"


def test_policy_rejections_say_what_to_do():
    p = _process(["1.0.0", "1.1.0", "1.2.0"], minimum="1.1.0", rollout="1.2.0")
    with pytest.raises(NotFoundError, match="publish it"):
        policy.check_rollout_target(p, "1.3.0")
    with pytest.raises(InvalidRequestError, match="below the minimum"):
        policy.check_rollout_target(p, "1.0.0")
    with pytest.raises(ConflictError, match="never downgrade"):
        policy.check_rollout_target(p, "1.1.0")
    with pytest.raises(ConflictError, match="already being rolled out"):
        policy.check_rollout_target(p, "1.2.0")
    with pytest.raises(ConflictError, match="releases are immutable"):
        policy.check_new_release(p, "1.2.0")
    with pytest.raises(NotFoundError, match="unknown process"):
        policy.require_process({"storagenode": p}, "satellite")
    with pytest.raises(ConflictError, match="has no rollout"):
        policy.require_rollout(_process(["1.0.0"]))
    for bad in (-1, 100.5, float("nan")):
        with pytest.raises(InvalidRequestError, match="between 0 and 100"):
            policy.check_percent(bad)
    for bad in (0, -5, 20_000):
        with pytest.raises(InvalidRequestError, match="percent per day"):
            policy.check_rate(bad)


def test_policy_minimum_cannot_pass_the_rollout_target():
    p = _process(["1.0.0", "1.1.0", "1.2.0"], rollout="1.1.0")
    policy.check_minimum(p, "1.1.0")
    with pytest.raises(ConflictError, match="newer than the version being rolled out"):
        policy.check_minimum(p, "1.2.0")
