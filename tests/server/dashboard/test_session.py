"""Session cookies and CSRF tokens (pure): signed, expiring, tied to the admin token."""

from __future__ import annotations

from nodekeeper.server.dashboard import session

TOKEN = "dashboard-test-token-0123456789"
T = 1_796_000_000.0


def test_a_session_lasts_its_time_and_no_longer():
    cookie = session.new_session(TOKEN, T, seconds=60)
    found = session.read_session(TOKEN, cookie, T + 59)
    assert isinstance(found, session.Session) and found.expires == T + 60
    assert session.read_session(TOKEN, cookie, T + 60) == "expired"


def test_a_changed_or_foreign_cookie_is_no_session():
    cookie = session.new_session(TOKEN, T)
    version, expires, nonce, signature = cookie.split(".")
    longer = f"{version}.{int(expires) + 10**6}.{nonce}.{signature}"
    for bad in (
        None, "", "garbage", longer, cookie + "0", cookie.replace("v1.", "v2.", 1),
        session.new_session("another-admin-token-0000", T),
    ):  # fmt: skip
        assert session.read_session(TOKEN, bad, T) is None, bad


def test_csrf_tokens_belong_to_one_session_and_one_admin_token():
    a = session.read_session(TOKEN, session.new_session(TOKEN, T), T)
    b = session.read_session(TOKEN, session.new_session(TOKEN, T), T)
    assert session.check_csrf(TOKEN, a, session.csrf_token(TOKEN, a))
    assert not session.check_csrf(TOKEN, a, session.csrf_token(TOKEN, b))
    assert not session.check_csrf(TOKEN, a, None)
    assert not session.check_csrf("another-admin-token-0000", a, session.csrf_token(TOKEN, a))
    nonce = session.new_login_nonce()
    assert session.check_login_csrf(TOKEN, nonce, session.login_csrf(TOKEN, nonce))
    assert not session.check_login_csrf(TOKEN, None, session.login_csrf(TOKEN, nonce))
    assert not session.check_login_csrf(TOKEN, "other", session.login_csrf(TOKEN, nonce))
