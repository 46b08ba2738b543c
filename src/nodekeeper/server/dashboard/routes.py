"""The dashboard's HTTP side: login, the page, confirmation, the actions, logout.

Every change is two POSTs, each with the session's CSRF token: the first renders a
confirmation page (no JavaScript needed), the second carries the action out and
redirects back to the page (post/redirect/get, so a reload never repeats it).
Responses carry a Content-Security-Policy without scripts: even a string that slipped
past escaping could not run.
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined

from .. import admin
from ..errors import ConflictError, ControlPlaneError
from ..store import audit_table, recent_reports
from . import actions, session
from .history import rebuild
from .views import clip, detail_text, pause_view, process_view, short_node

PREFIX = "/dashboard"
MAX_FORM_BYTES = 16 * 1024
SHOWN_REPORTS = 40
SHOWN_AUDIT = 40
HISTORY_ROWS = 5000  # audit rows replayed for one chart; a rollout has far fewer

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _when(ts: Any) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _when_short(ts: Any) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M")


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.2f} %"


_env = Environment(
    loader=PackageLoader("nodekeeper.server.dashboard", "templates"),
    autoescape=True,  # every {{ }} is escaped; only the chart's Markup passes as is
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    when=_when,
    when_short=_when_short,
    pct=_pct,
    short_node=short_node,
    detail_text=detail_text,
    clip=clip,
)
_env.globals.update(prefix=PREFIX, labels=actions.LABELS)


def _page(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("csrf", None)
    html = _env.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


def _token(request: Request) -> str:
    return request.app.state.settings.admin_token.value


def _now(request: Request) -> float:
    return request.app.state.settings.clock()


def _caller(request: Request) -> str:
    return f"{request.client.host if request.client else 'unknown'} (dashboard)"


def _to_login(message: str | None = None) -> RedirectResponse:
    target = f"{PREFIX}/login" + (f"?m={message}" if message else "")
    return RedirectResponse(target, status_code=303, headers=HEADERS)


def _session(request: Request) -> session.Session | RedirectResponse:
    found = session.read_session(
        _token(request), request.cookies.get(session.COOKIE), _now(request)
    )
    if found == "expired":
        return _to_login("expired")
    if not isinstance(found, session.Session):
        return _to_login()
    return found


def _problem(status_code: int, title: str, message: str) -> HTMLResponse:
    return _page("message.html", status_code, title=title, message=message, back=PREFIX)


async def _form(request: Request) -> dict[str, str] | Response:
    """The fields of a urlencoded form (the first of each name); parsed here rather than
    through FastAPI's Form, which needs python-multipart for nothing more."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return _problem(
            415,
            "Not a form",
            "The dashboard takes forms (application/x-www-form-urlencoded); "
            "use the admin API for JSON.",
        )
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return _problem(
                413, "Form too large", f"A dashboard form is at most {MAX_FORM_BYTES} bytes."
            )
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


_LOGIN_MESSAGES = {
    "expired": "Your session expired; log in again.",
    "bye": "Logged out.",
}


def _cookie_flags(request: Request) -> dict[str, Any]:
    # Secure when the browser reached us over https (uvicorn reads X-Forwarded-Proto
    # from a trusted proxy); a Secure cookie over plain http would never come back.
    return {
        "httponly": True,
        "samesite": "strict",
        "secure": request.url.scheme == "https",
        "path": PREFIX,
    }


def _login_page(request: Request, status_code: int = 200, error: str | None = None) -> Response:
    nonce = session.new_login_nonce()
    response = _page(
        "login.html",
        status_code,
        error=error,
        notice=_LOGIN_MESSAGES.get(request.query_params.get("m", "")),
        login_csrf=session.login_csrf(_token(request), nonce),
    )
    response.set_cookie(session.LOGIN_COOKIE, nonce, max_age=3600, **_cookie_flags(request))
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    if isinstance(form, Response):
        return form
    token = _token(request)
    if not session.check_login_csrf(
        token, request.cookies.get(session.LOGIN_COOKIE), form.get("csrf")
    ):
        return _login_page(
            request, 403, "The login form expired or came from another site; log in again."
        )
    presented = form.get("token", "").strip()
    if not presented:
        return _login_page(request, 401, "Enter the admin token.")
    if not request.app.state.settings.admin_token.matches(presented):
        return _login_page(
            request,
            401,
            "Wrong admin token. Use the token the control plane was started with: its start "
            "message says where it is (NODEKEEPER_ADMIN_TOKEN, --admin-token-file, or the "
            "admin-token file in its data dir).",
        )
    response = RedirectResponse(PREFIX, status_code=303, headers=HEADERS)
    response.set_cookie(
        session.COOKIE,
        session.new_session(token, _now(request)),
        max_age=int(session.SESSION_SECONDS),
        **_cookie_flags(request),
    )
    response.delete_cookie(session.LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    found = _session(request)
    if isinstance(found, Response):
        return found
    form = await _form(request)
    if isinstance(form, Response):
        return form
    if not session.check_csrf(_token(request), found, form.get("csrf")):
        return _csrf_refused()
    response = _to_login("bye")
    response.delete_cookie(session.COOKIE, path=PREFIX)
    return response


def _csrf_refused() -> Response:
    return _problem(
        403,
        "Refused",
        "The form's CSRF token is missing or wrong (an old page, or a form from another "
        "site). Nothing was changed; reload the dashboard and try again.",
    )


def _histories(request: Request, rows: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """Each rollout's ramp, replayed from the audit rows since it started."""
    starts = [r["started_at"] for r in rows if r.get("target") and r.get("started_at")]
    if not starts:
        return {}
    with request.app.state.store.engine.connect() as conn:
        found = conn.execute(
            sa.select(audit_table)
            .where(audit_table.c.action.like("rollout.%"))
            .where(audit_table.c.at >= min(starts))
            .order_by(audit_table.c.id.desc())
            .limit(HISTORY_ROWS)
        ).mappings()
        entries = [{**e, "detail": _json(e["detail"])} for e in reversed(list(found))]
    return {
        r["process"]: rebuild(entries, r["process"], r["target"], now, r.get("percent"))
        for r in rows
        if r.get("target")
    }


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {}


_DONE = {
    "pause": "Paused: no further nodes are offered the new version until you resume.",
    "resume": "Resumed: the ramp goes on from where it was held.",
    "set": "Set: the announcement offers the new percent now.",
    "abort": "Aborted: the cursor is at 0 %; nodes that committed keep what they run.",
}


@router.get("")
def dashboard(request: Request) -> Response:
    found = _session(request)
    if isinstance(found, Response):
        return found
    now = _now(request)
    rows = admin.status(request)
    histories = _histories(request, rows, now)
    available = actions.available()
    store = request.app.state.store
    done = request.query_params.get("done")
    notice = None
    if done in _DONE:  # shown in the process's card, where the redirect's anchor points
        notice = (request.query_params.get("process", ""), _DONE[done])
    return _page(
        "dashboard.html",
        csrf=session.csrf_token(_token(request), found),
        processes=[process_view(r, histories.get(r["process"]), available) for r in rows],
        reports=recent_reports(store, SHOWN_REPORTS, False),
        audit=store.audit_entries(SHOWN_AUDIT),
        now=now,
        notice=notice,
        signing=_signing(request, now),
    )


def _signing(request: Request, now: float) -> dict[str, Any]:
    """The signed-releases card and banner (decision 084): each role's expiry, marked
    when close, and what stops the server from signing."""
    from ..tuf_expiry import describe, warning

    repo = request.app.state.tuf
    roles = [
        {
            "role": e.role,
            "version": e.version,
            "expires": e.expires,
            "left": "expired" if e.left(now) <= 0 else describe(e.left(now)),
            "warning": warning(e, now),
        }
        for e in repo.expiries()
    ]
    return {"roles": roles, "problems": repo.problems(now)}


def _row(request: Request, process: str) -> dict[str, Any] | None:
    return next((r for r in admin.status(request) if r["process"] == process), None)


@router.post("/confirm")
async def confirm(request: Request) -> Response:
    found = _session(request)
    if isinstance(found, Response):
        return found
    form = await _form(request)
    if isinstance(form, Response):
        return form
    token = _token(request)
    if not session.check_csrf(token, found, form.get("csrf")):
        return _csrf_refused()
    action, process = form.get("action", ""), form.get("process", "")
    try:
        if action not in actions.available():
            raise _unknown(action)
        percent = actions.parse_percent(form.get("percent")) if action == "set" else None
        row = await anyio.to_thread.run_sync(_row, request, process)
        if row is None:
            raise _NotFound(f"unknown process {process!r}")
        if not row.get("target"):  # what the Store would answer, before a confirmation
            raise ConflictError(
                f"{process} has no rollout; start one with "
                f"`nodekeeper rollout start {process} VERSION`"
            )
    except ControlPlaneError as exc:
        return _refusal(exc)
    pause = pause_view(row.get("pause"))
    return _page(
        "confirm.html",
        csrf=session.csrf_token(token, found),
        action=action,
        process=process,
        percent=percent,
        row=row,
        auto_pause_why=pause.why if pause is not None and pause.by == "auto" else None,
    )


class _NotFound(ControlPlaneError):
    status_code = 404


def _unknown(action: str) -> ControlPlaneError:
    offered = ", ".join(sorted(actions.available()))
    return _NotFound(f"unknown action {action!r}; the dashboard offers: {offered}")


def _refusal(exc: ControlPlaneError) -> Response:
    return _problem(exc.status_code, "Not done", exc.message.rstrip(".") + ". Nothing was changed.")


@router.post("/do")
async def do(request: Request) -> Response:
    found = _session(request)
    if isinstance(found, Response):
        return found
    form = await _form(request)
    if isinstance(form, Response):
        return form
    if not session.check_csrf(_token(request), found, form.get("csrf")):
        return _csrf_refused()
    action, process = form.get("action", ""), form.get("process", "")
    try:
        if action not in actions.available():
            raise _unknown(action)
        percent = actions.parse_percent(form.get("percent")) if action == "set" else None
        await anyio.to_thread.run_sync(
            actions.perform, request, action, process, percent, _caller(request)
        )
    except ControlPlaneError as exc:
        return _refusal(exc)
    target = f"{PREFIX}?done={action}&process={quote(process)}#p-{quote(process)}"
    return RedirectResponse(target, status_code=303, headers=HEADERS)


@router.get("/static/dashboard.css")
def stylesheet() -> Response:
    css = resources.files(__package__).joinpath("static/dashboard.css").read_bytes()
    return Response(
        css,
        media_type="text/css",
        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
    )
