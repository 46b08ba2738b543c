"""The dashboard in-process: the real app over SQLite through TestClient, with the
server's clock under the test's control (a session that expires, a ramp over days).

Login and its errors, session expiry, CSRF refusal, escaping of what nodes send, each
action through its confirmation page, and the audit rows they leave."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from nodekeeper.server import admin as admin_api
from nodekeeper.server import ramp
from nodekeeper.server.app import create_app
from nodekeeper.server.dashboard import session

from .scenario import (
    DAY,
    EVIL,
    NOW,
    TOKEN,
    Clock,
    admin_headers,
    hidden,
    login,
    populate,
)
from .scenario import settings as make_settings


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(tmp_path, clock):
    return create_app(make_settings(tmp_path, clock))


@pytest.fixture
def client(app, clock):
    with TestClient(app) as c:
        populate(c, clock)
        yield c


@pytest.fixture
def logged_in(client):
    assert login(client).status_code == 303
    return client


def status_row(client, process="storagenode") -> dict:
    """The process's status row as an operator's action leaves it: without ``health``,
    the judgement the app's background loop makes on its own schedule (its first round
    may land between a test's "before" and "after"; it may also be late under load)."""
    rows = client.get("/v1/admin/status", headers=admin_headers()).json()
    row = next(r for r in rows if r["process"] == process)
    row.pop("health", None)
    return row


def audit(client) -> list[dict]:
    return client.get("/v1/admin/audit", headers=admin_headers()).json()


def press(client, action, process="storagenode", **fields):
    """Press the button on the page: the confirmation page."""
    page = client.get("/dashboard")
    form = {"csrf": hidden(page.text, "csrf"), "action": action, "process": process, **fields}
    confirmation = client.post("/dashboard/confirm", data=form)
    assert confirmation.status_code == 200, confirmation.text
    return confirmation


def say_yes(client, confirmation):
    """The confirmation page's "Yes" button: its form, as the browser sends it."""
    form = dict(
        re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', confirmation.text)
    )
    return client.post("/dashboard/do", data=form, follow_redirects=False)


def confirm_then_do(client, action, process="storagenode", **fields):
    confirmation = press(client, action, process, **fields)
    return confirmation, say_yes(client, confirmation)


def test_the_page_needs_a_login_and_a_wrong_token_says_so(client):
    first = client.get("/dashboard", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/dashboard/login"
    wrong = login(client, token="not-the-admin-token")
    assert wrong.status_code == 401
    assert "Wrong admin token" in wrong.text and "its start message says where" in wrong.text
    empty = login(client, token="")
    assert empty.status_code == 401 and "Enter the admin token." in empty.text
    assert session.COOKIE not in client.cookies
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_login_sets_a_strict_httponly_session_cookie_and_logout_ends_it(client):
    answer = login(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith(session.COOKIE + "=")
    )
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/dashboard"} <= flags
    assert "secure" not in flags  # plain http here; see the https test below
    page = client.get("/dashboard")
    assert page.status_code == 200 and "storagenode" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"

    out = client.post("/dashboard/logout", data={"csrf": hidden(page.text, "csrf")})
    assert out.status_code == 200 and "Logged out." in out.text
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_secure_over_https(app, clock):
    with TestClient(app, base_url="https://testserver") as c:
        answer = login(c)
        cookie = next(
            x for x in answer.headers.get_list("set-cookie") if x.startswith(session.COOKIE)
        )
        assert "secure" in cookie.lower()


def test_a_session_expires_and_another_token_is_no_session(logged_in, app, clock):
    assert logged_in.get("/dashboard", follow_redirects=False).status_code == 200
    clock.now = NOW + session.SESSION_SECONDS + 1
    expired = logged_in.get("/dashboard")
    assert expired.url.path == "/dashboard/login"
    assert "Your session expired; log in again." in expired.text
    # A session signed with another admin token (another control plane, or the token
    # before a rotation) is no session here.
    other = session.new_session("a-different-admin-token-123", clock.now)
    logged_in.cookies.set(session.COOKIE, other, path="/dashboard")
    assert logged_in.get("/dashboard", follow_redirects=False).status_code == 303
    forged = session.new_session(TOKEN, clock.now)[:-4] + "0000"
    logged_in.cookies.set(session.COOKIE, forged, path="/dashboard")
    assert logged_in.get("/dashboard", follow_redirects=False).status_code == 303


def test_a_session_is_accepted_by_every_replica_with_the_token(tmp_path, clock):
    """No session table: a second app over its own database takes the cookie too."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = create_app(make_settings(tmp_path / "a", clock))
    b = create_app(make_settings(tmp_path / "b", clock))
    with TestClient(a) as ca, TestClient(b) as cb:
        assert login(ca).status_code == 303
        cb.cookies.set(session.COOKIE, ca.cookies[session.COOKIE], path="/dashboard")
        assert cb.get("/dashboard", follow_redirects=False).status_code == 200


def test_forms_without_the_right_csrf_token_change_nothing(logged_in):
    before = (status_row(logged_in), audit(logged_in))
    for csrf in (None, "", "0" * 64, session.login_csrf(TOKEN, "nonce")):
        form = {"action": "pause", "process": "storagenode"}
        if csrf is not None:
            form["csrf"] = csrf
        for path in ("/dashboard/confirm", "/dashboard/do", "/dashboard/logout"):
            answer = logged_in.post(path, data=form, follow_redirects=False)
            assert answer.status_code == 403, (path, csrf)
            assert "CSRF token is missing or wrong" in answer.text
    # The login form has its own: a login posted from another site is refused too.
    answer = logged_in.post(
        "/dashboard/login", data={"csrf": "x", "token": TOKEN}, follow_redirects=False
    )
    assert answer.status_code == 403 and "came from another site" in answer.text
    # JSON is not a form.
    answer = logged_in.post("/dashboard/do", json={"action": "pause"})
    assert answer.status_code == 415
    assert (status_row(logged_in), audit(logged_in)) == before
    assert logged_in.get("/dashboard", follow_redirects=False).status_code == 200


def test_what_nodes_send_is_shown_as_text(logged_in):
    page = logged_in.get("/dashboard").text
    assert EVIL not in page
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt; download broke" in page
    assert "<script" not in page.lower()


def test_the_page_has_the_numbers_and_the_chart(logged_in):
    page = logged_in.get("/dashboard").text
    section = page[page.index('id="p-storagenode"') : page.index('id="p-storagenode-updater"')]
    assert 'id="percent-storagenode">60.00 %<' in section
    assert "Versions (12 nodes)" in section
    rows = re.findall(r'<span class="ver">([^<]+)</span>.*?</tr>', section, re.S)
    assert rows == ["1.1.0", "1.0.0"]
    assert "rolled_back 1, update_failed 1" in section
    points = re.search(r'<polyline class="ramp" points="([^"]+)"', section).group(1).split()
    assert len(points) == 6  # start, pause, resume, set (from 30 to 40), now
    assert section.count('<circle class="mark') == 4  # start, pause, resume, set
    assert "rollout.pause" in page and "release.publish" in page  # the audit log
    assert "storagenode-updater" in page and "No rollout" in page
    css = logged_in.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "http" not in css.text  # no fonts or images from elsewhere


def test_the_page_and_its_chart_over_postgresql(tmp_path, clock, pg_url):
    """The one query of its own (the audit rows behind the chart) on the other back end."""
    app = create_app(make_settings(tmp_path, clock, db_url=pg_url))
    with TestClient(app) as c:
        populate(c, clock)
        login(c)
        page = c.get("/dashboard").text
        points = re.search(r'<polyline class="ramp" points="([^"]+)"', page).group(1).split()
        assert len(points) == 6 and 'id="percent-storagenode">60.00 %<' in page


def test_pause_resume_and_set_go_through_confirmation_into_the_audit_log(logged_in, clock):
    confirmation = press(logged_in, "pause")
    assert "Pause the rollout of storagenode?" in confirmation.text
    assert status_row(logged_in)["state"] == "running"  # the confirmation changed nothing
    done = say_yes(logged_in, confirmation)
    assert done.status_code == 303
    assert done.headers["location"] == "/dashboard?done=pause&process=storagenode#p-storagenode"
    assert status_row(logged_in)["state"] == "paused"
    entry = audit(logged_in)[0]
    assert entry["action"] == "rollout.pause" and entry["remote"].endswith("(dashboard)")
    page = logged_in.get(done.headers["location"])
    assert 'id="notice">Paused' in page.text

    clock.now += 3600
    _, done = confirm_then_do(logged_in, "resume")
    assert done.status_code == 303 and status_row(logged_in)["state"] == "running"

    confirmation, done = confirm_then_do(logged_in, "set", percent="75")
    assert "to <strong>75.00 %</strong>" in confirmation.text
    assert done.status_code == 303
    assert status_row(logged_in)["percent"] == 75.0
    assert audit(logged_in)[0]["detail"]["percent"] == 75.0


@pytest.mark.parametrize(
    "given, says",
    [
        ("140", "percent must be between 0 and 100, got 140. Nothing"),
        ("-1", "percent must be between 0 and 100, got -1. Nothing"),
        ("lots", "percent must be a number from 0 to 100, got 'lots'"),
        ("nan", "percent must be a number from 0 to 100, got 'nan'"),
        ("", "percent must be a number from 0 to 100, got ''"),
    ],
)
def test_a_percent_out_of_range_says_what_is_allowed_and_changes_nothing(logged_in, given, says):
    before = (status_row(logged_in), audit(logged_in))
    csrf = hidden(logged_in.get("/dashboard").text, "csrf")
    form = {"csrf": csrf, "action": "set", "process": "storagenode", "percent": given}
    for path in ("/dashboard/confirm", "/dashboard/do"):
        answer = logged_in.post(path, data=form, follow_redirects=False)
        assert answer.status_code == 422, answer.text
        assert says in html.unescape(answer.text), answer.text
    assert (status_row(logged_in), audit(logged_in)) == before


def test_a_refused_action_says_why(logged_in):
    csrf = hidden(logged_in.get("/dashboard").text, "csrf")
    form = {"csrf": csrf, "action": "pause", "process": "storagenode-updater"}
    answer = logged_in.post("/dashboard/do", data=form)
    assert answer.status_code == 409
    assert "storagenode-updater has no rollout" in answer.text
    answer = logged_in.post("/dashboard/confirm", data=form)
    assert answer.status_code == 409 and "has no rollout" in answer.text
    form["process"] = "<b>nope</b>"
    answer = logged_in.post("/dashboard/confirm", data=form)
    assert answer.status_code == 404 and "&lt;b&gt;nope&lt;/b&gt;" in answer.text
    form.update(process="storagenode", action="explode")
    answer = logged_in.post("/dashboard/do", data=form)
    assert answer.status_code == 404
    assert "unknown action 'explode'" in html.unescape(answer.text)


def test_abort_is_offered_only_when_the_admin_api_has_it(logged_in, monkeypatch):
    """Abort arrives with the auto-pause work as ``admin.abort_rollout``; the button
    follows it. The handler set here is a stand-in for that one (cursor to 0, paused),
    named as such; without it the button is absent and the action refused."""
    monkeypatch.delattr(admin_api, "abort_rollout", raising=False)
    assert 'id="abort-storagenode"' not in logged_in.get("/dashboard").text
    csrf = hidden(logged_in.get("/dashboard").text, "csrf")
    refused = logged_in.post(
        "/dashboard/confirm", data={"csrf": csrf, "action": "abort", "process": "storagenode"}
    )
    assert refused.status_code == 404 and "offers: pause, resume, set" in refused.text

    def stand_in_abort(process: str, request, caller: admin_api.Caller):
        return admin_api._change(
            request,
            process,
            "rollout.abort",
            lambda state, now: ramp.pause(ramp.set_percent(state, 0.0, now), now),
            caller,
        )

    monkeypatch.setattr(admin_api, "abort_rollout", stand_in_abort, raising=False)
    assert 'id="abort-storagenode"' in logged_in.get("/dashboard").text
    confirmation, done = confirm_then_do(logged_in, "abort")
    assert "Nodes that already committed to it are not touched" in confirmation.text
    assert done.status_code == 303
    assert status_row(logged_in)["percent"] == 0.0
    entry = audit(logged_in)[0]
    assert entry["action"] == "rollout.abort" and entry["remote"].endswith("(dashboard)")


def test_contract_fields_are_shown_when_present(logged_in, monkeypatch):
    """The rollout's health and plan (built by the auto-pause work) as the contract
    describes them; the page above works without them."""
    from nodekeeper.server import admin

    real = admin.status

    def with_contract(request):
        rows = real(request)
        for row in rows:
            if row["process"] == "storagenode":
                row.update(
                    state="paused",
                    pause={
                        "by": "auto",
                        "at": NOW - 60,
                        "why": "1.1.0 fails <more> than 1.0.0.",
                        "numbers": {
                            "candidate": "1.1.0",
                            "updated": 40,
                            "failed": 7,
                            "rate": 0.175,
                            "baseline": "1.0.0",
                            "baseline_rate": 0.01,
                            "p_value": 0.0004,
                        },
                        "reports": [
                            {
                                "node_id": "ab" * 32,
                                "kind": "crash_loop",
                                "at": NOW - 100,
                                "message": "<img src=x>",
                            },
                        ],
                    },
                    plan={
                        "stages": [1, 5, 25, 100],
                        "soak_seconds": 6 * 3600,
                        "stage": 2,
                        "stage_since": NOW - DAY,
                        "next_stage_at": None,
                    },
                    health={
                        "action": "pause",
                        "why": "too many failures",
                        "updated": 40,
                        "failed": 7,
                    },
                )
        return rows

    monkeypatch.setattr(admin, "status", with_contract)
    page = logged_in.get("/dashboard").text
    assert "Paused by the control plane at 2026-11-30 11:59:00 UTC" in page
    assert "1.1.0 fails &lt;more&gt; than 1.0.0." in page
    assert "7 of 40 updated nodes failed" in page and "p = 0.0004" in page
    assert "&lt;img src=x&gt;" in page and "<img" not in page
    assert '<span class="stage current">25 %</span>' in page and "soak 6 h" in page
    assert 'id="resume-storagenode"' in page and 'id="pause-storagenode"' not in page


@pytest.mark.parametrize(
    "public_url, host, shown",
    [
        ("https://version.example.net", "0.0.0.0", "https://version.example.net/dashboard"),
        ("http://0.0.0.0:7780", "0.0.0.0", "http://localhost:7780/dashboard"),
        ("http://[::]:7780", "::", "http://localhost:7780/dashboard"),
        ("http://127.0.0.1:7780", "127.0.0.1", "http://127.0.0.1:7780/dashboard"),
    ],
)
def test_the_start_message_links_a_dashboard_a_browser_can_open(public_url, host, shown):
    from nodekeeper.server.startup import dashboard_url

    assert dashboard_url(public_url, host, 7780) == shown
