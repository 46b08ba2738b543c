"""A client of the keeper's status API, for the tray app and the CLI (decision 069).

Standard library only (``http.client``) and nothing else imported at module level: the
tray imports this at start, and httpx alone costs ~12 MB and a tenth of a second. It
also ignores proxy variables, which is right for a loopback address and which httpx
would not do by default.

Reads need no token. Actions send ``Authorization: Bearer <token>``, the content of
``<state dir>/control.token``, which only the keeper's account and administrators can
read; :func:`read_token` gives None to anyone else, and the keeper then answers 401,
raised as :class:`NotAuthorized` with the sentence to show.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nodekeeper.keeper.control_token import TOKEN_FILE

if TYPE_CHECKING:
    from nodekeeper.keeper.config import KeeperConfig

__all__ = [
    "NEEDS_ADMIN",
    "Busy",
    "KeeperClient",
    "KeeperClientError",
    "KeeperUnreachable",
    "NotAuthorized",
    "Rejected",
    "read_token",
]

# A restart waits for the node's graceful stop (stop.timeout_seconds, 30 s by default)
# and the new start; setup and settings end with a restart too.
ACTION_TIMEOUT = 120.0
# POST /update/check waits up to 120 s for the cycle (keeper.api.CHECK_DEADLINE_SECONDS).
CHECK_TIMEOUT = 150.0
MAX_ANSWER = 4 * 1024 * 1024

NEEDS_ADMIN = (
    "needs administrator rights: run from an elevated prompt (Windows) or with sudo "
    "(Linux); only administrators can read the keeper's control token"
)


class KeeperClientError(Exception):
    """Something the operator should see; ``str()`` is the sentence to show."""


class KeeperUnreachable(KeeperClientError):
    """No keeper answers at the URL (not running, another port, a timeout)."""


class NotAuthorized(KeeperClientError):
    """The action needs the control token: none was readable, or it was wrong."""


class Rejected(KeeperClientError):
    """The keeper refused the request's values (400); ``errors`` maps each field to what
    is wrong with it and how to fix it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" if k else v for k, v in self.errors.items()))


class Busy(KeeperClientError):
    """The keeper cannot do it now (409): an update is being carried out, or nothing is
    installed to run."""


def read_token(path: Path) -> str | None:
    """The control token, or None when this process cannot read it (not an
    administrator, or no keeper has started with that state directory yet)."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


class KeeperClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_config(cls, config: KeeperConfig, timeout: float = 5.0) -> KeeperClient:
        """The keeper of ``config``: its status.listen, and its token if readable."""
        host, port = config.status_host_port()
        shown = f"[{host}]" if ":" in host else host
        token = read_token(config.state_path() / TOKEN_FILE)
        return cls(f"http://{shown}:{port}", token, timeout)

    # -- reads -----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def settings(self) -> dict[str, Any]:
        """``{"needs_setup": bool, "values": {wallet, email, external_address,
        storage_dir, allocation}}``."""
        return self._call("GET", "/settings")

    def check_now(self) -> dict[str, Any]:
        """A check cycle now: ``{"busy", "updating", "check", "decision"}``."""
        return self._call("POST", "/update/check", timeout=max(self.timeout, CHECK_TIMEOUT))

    # -- actions (token) -------------------------------------------------------------------

    def restart(self) -> dict[str, Any]:
        return self._act("/node/restart", {})

    def pause_updates(self, until: float | None) -> dict[str, Any]:
        """Pause updates until ``until`` (unix seconds); None resumes. Returns the
        maintenance dict."""
        return self._act("/updates/pause", {"until": until}, self.timeout)

    def set_quiet_window(self, window: str | None) -> dict[str, Any]:
        """``"HH:MM-HH:MM"`` (local time) or None to clear. Returns the maintenance dict."""
        return self._act("/updates/quiet-window", {"window": window}, self.timeout)

    def apply_settings(self, values: dict[str, Any]) -> dict[str, Any]:
        """``{"applied": [...], "restarted": bool}``."""
        return self._act("/settings", values)

    def set_up(self, values: dict[str, Any]) -> dict[str, Any]:
        """``{"set_up": true}``."""
        return self._act("/setup", values)

    # -- plumbing ----------------------------------------------------------------------

    def _act(self, path: str, body: dict[str, Any], timeout: float | None = None) -> dict:
        return self._call("POST", path, body, timeout=timeout or max(self.timeout, ACTION_TIMEOUT))

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        status, data = self._request(method, path, body, timeout or self.timeout)
        if 200 <= status < 300:
            return data
        error = str(data.get("error") or f"HTTP {status}")
        if status == 401:
            if self.token is None:
                raise NotAuthorized(NEEDS_ADMIN)
            raise NotAuthorized(
                f"the keeper refused the control token ({error}); it changes when its file "
                "is deleted: run the command again, or restart the tray"
            )
        if status == 400:
            errors = data.get("errors")
            if isinstance(errors, dict) and errors:
                raise Rejected({str(k): str(v) for k, v in errors.items()})
            raise Rejected({"": error})
        if status == 409:
            raise Busy(error if "error" in data else _busy_sentence(data))
        if status in (404, 405):
            raise KeeperClientError(
                f"{error} (the keeper at {self.base_url} does not offer {method} {path}: "
                "an older version?)"
            )
        raise KeeperClientError(f"{self.base_url}{path}: {error}")

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, timeout: float
    ) -> tuple[int, dict[str, Any]]:
        import http.client

        where = self.base_url + path
        parts = urlsplit(self.base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise KeeperUnreachable(
                f"no keeper answering at {where}: give its URL as http://127.0.0.1:PORT"
            )
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout}")
        payload = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token is not None and method == "POST":
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            port = parts.port or 80
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
            try:
                conn.request(method, parts.path.rstrip("/") + path, payload, headers)
                response = conn.getresponse()
                raw = response.read(MAX_ANSWER + 1)
                status = response.status
            finally:
                conn.close()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            why = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                why = f"no answer within {timeout:g} s"
            raise KeeperUnreachable(
                f"no keeper answering at {where} ({why}); is it running?"
            ) from None
        if len(raw) > MAX_ANSWER:
            raise KeeperClientError(f"{where}: the answer is larger than {MAX_ANSWER} bytes")
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            data = {"error": raw[:200].decode("utf-8", "replace").strip()}
        if not isinstance(data, dict):
            data = {"error": f"unexpected answer: {str(data)[:200]}"}
        return status, data


def _busy_sentence(data: dict[str, Any]) -> str:
    target = data.get("updating")
    if target:
        return (
            f"an update to {target} is being carried out; try again when it is done "
            "(`nodekeeper status` shows its step)"
        )
    return "the keeper is busy; try again in a moment"
