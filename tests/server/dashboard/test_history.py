"""The ramp replayed from audit rows, and its SVG (pure)."""

from __future__ import annotations

from nodekeeper.server.dashboard.chart import ramp_svg
from nodekeeper.server.dashboard.history import rebuild

DAY = 86_400.0
T = 1_796_000_000.0


def row(at, action, **detail):
    return {"at": at, "action": action, "remote": "10.0.0.1", "detail": detail}


def start(at, version="1.1.0", rate=None, process="storagenode"):
    return row(at, "rollout.start", process=process, version=version, rate_per_day=rate)


def change(at, action, before, after, **extra):
    return row(
        at, action, process="storagenode", version="1.1.0",
        percent_before=before, percent_after=after, **extra,
    )  # fmt: skip


def test_a_running_ramp_has_a_corner_where_it_reaches_100():
    history = rebuild([start(T, rate=50)], "storagenode", "1.1.0", T + 3 * DAY)
    assert history.points == [(T, 0.0), (T + 2 * DAY, 100.0), (T + 3 * DAY, 100.0)]
    assert [m.action for m in history.markers] == ["start"]


def test_pause_resume_set_and_a_later_action_replay_to_the_present():
    rows = [
        row(T - DAY, "release.publish", process="storagenode", version="1.1.0"),
        start(T, rate=10),
        change(T + DAY, "rollout.pause", 10, 10),
        change(T + 2 * DAY, "rollout.resume", 10, 10),
        change(T + 3 * DAY, "rollout.set", 20, 50, percent=50),
        # an action of the auto-pause work; only its percent_after is read
        change(T + 4 * DAY, "rollout.auto_pause", 60, 60),
        change(T + 5 * DAY, "rollout.abort", 60, 0),
        start(T + 2 * DAY, process="other"),  # another process: not this curve
    ]
    history = rebuild(rows, "storagenode", "1.1.0", T + 6 * DAY)
    assert history.points == [
        (T, 0.0),
        (T + DAY, 10.0),
        (T + 2 * DAY, 10.0),
        (T + 3 * DAY, 20.0),
        (T + 3 * DAY, 50.0),
        (T + 4 * DAY, 60.0),
        (T + 5 * DAY, 60.0),
        (T + 5 * DAY, 0.0),
        (T + 6 * DAY, 0.0),
    ]
    assert [m.action for m in history.markers] == [
        "start", "pause", "resume", "set", "auto_pause", "abort",
    ]  # fmt: skip


def test_a_newer_rollout_replaces_the_older_and_the_present_percent_ends_the_curve():
    rows = [
        start(T, version="1.1.0", rate=10),
        start(T + DAY, version="1.2.0", rate=20),
        change(T + 2 * DAY, "rollout.stage", 20, 25),
    ]
    assert rebuild(rows, "storagenode", "1.3.0", T + 3 * DAY) is None
    history = rebuild(rows, "storagenode", "1.2.0", T + 3 * DAY, current_percent=5.0)
    assert history.start == T + DAY
    assert history.points[-2:] == [(T + 3 * DAY, 45.0), (T + 3 * DAY, 5.0)]  # told, not hidden


def test_the_svg_escapes_its_texts_and_draws_every_change():
    rows = [start(T, rate=10), {**change(T + DAY, "rollout.pause", 10, 10), "remote": "<x>"}]
    svg = str(ramp_svg(rebuild(rows, "storagenode", "1.1.0", T + 2 * DAY), 'a "title" <b>'))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "by &lt;x&gt;" in svg
    assert svg.count('class="mark ') == 2
    assert ">11-" in svg  # two days: day and hour ticks, no date repeated


def test_a_staged_plan_starts_at_its_first_stage_and_steps():
    rows = [
        {**start(T), "detail": {**start(T)["detail"], "stages": [1, 5, 25, 100]}},
        change(T + DAY, "rollout.stage", 1, 5, stage_before=0, stage_after=1),
        # the auto-pause's row names the percent it held at, not percent_after
        row(T + 1.5 * DAY, "rollout.auto_pause", process="storagenode", percent=5.0),
    ]
    history = rebuild(rows, "storagenode", "1.1.0", T + 2 * DAY, current_percent=5.0)
    assert history.points == [
        (T, 1.0),
        (T + DAY, 1.0),
        (T + DAY, 5.0),
        (T + 1.5 * DAY, 5.0),
        (T + 2 * DAY, 5.0),
    ]
    assert [(m.action, m.percent) for m in history.markers] == [
        ("start", 1.0), ("stage", 5.0), ("auto_pause", 5.0),
    ]  # fmt: skip
