"""The keeper asks the control plane to dial its node back from outside (decision 082).

Once the node is healthy, then every ``reachability.interval_seconds``, a signed
``POST /v1/reachability`` with the node's declared public address; the control plane
dials the address the request came from on the declared port (TCP connect, QUIC probe)
and answers what it found. Every request has a whole-exchange deadline; a 429's
Retry-After is honoured (the control plane limits checks per node and per address);
a failure waits ``retry_seconds`` (or Retry-After). Decisions: ``reachability_rules``.

The last result is in the status (``reachability``), hence in `nodekeeper status`, the
tray and the metrics, and is kept in ``state/reachability.json`` so that a restarted
keeper shows it and does not report the same unreachable node twice: becoming
unreachable is reported once (kind ``unreachable``), again only after it was reachable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import tomllib
from collections.abc import Callable
from typing import Any

import httpx

from nodekeeper.backoff import parse_retry_after
from nodekeeper.durable import write_durably
from nodekeeper.identity import IdentityError, IdentitySource
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.reachability_rules import (
    Asked,
    becomes_unreachable,
    next_delay,
    valid_result,
)
from nodekeeper.launcher.textfile import TextDecodeError, read_config_text
from nodekeeper.updater.interfaces import Reports
from nodekeeper.version.reports import sign_report

log = logging.getLogger("nodekeeper.keeper.reachability")

PATH = "/v1/reachability"
STATE_FILE = "reachability.json"
MAX_ANSWER_BYTES = 16 * 1024
# While the node is not healthy (or not set up), look again this often.
HEALTH_POLL_SECONDS = 5.0
_STORJ_EXTERNAL = re.compile(r"""^\s*contact\.external-address\s*:\s*["']?([^"'#\s]+)""", re.M)


def declared_address(config: KeeperConfig) -> tuple[str | None, str]:
    """The node's public HOST:PORT and where it came from, or None and why there is none.
    ``[reachability] address`` first, then the node's own files (read, never imported:
    the keeper does not import the node)."""
    if config.reachability.address:
        return config.reachability.address, "reachability.address"
    config_dir = config.node_config_path()
    toml = config_dir / "config.toml"
    yaml = config_dir / "config.yaml"
    fix = (
        "set it up with `storagenode setup --external-address HOST:PORT` (or [operator] "
        "external_address in its config.toml), or set [reachability] address in the keeper's "
        "config"
    )
    try:
        if toml.is_file():
            operator = tomllib.loads(read_config_text(toml)).get("operator") or {}
            value = operator.get("external_address") if isinstance(operator, dict) else None
            if isinstance(value, str) and value.strip():
                return value.strip(), f"[operator] external_address in {toml}"
            return None, f"the node has no external address: {fix}"
        if yaml.is_file():
            found = _STORJ_EXTERNAL.search(read_config_text(yaml))
            if found:
                return found.group(1), f"contact.external-address in {yaml}"
            return None, f"{yaml} has no contact.external-address: {fix}"
    except (OSError, TextDecodeError, tomllib.TOMLDecodeError) as exc:
        return None, f"cannot read the node's config ({exc}); {fix}"
    return None, f"the node is not set up yet ({config_dir} has no config.toml)"


class ReachabilityWatch:
    def __init__(
        self,
        config: KeeperConfig,
        *,
        healthy: Callable[[], bool],
        reports: Reports | None = None,
        version: Callable[[], str | None] = lambda: None,
        process: str = "storagenode",
        health_poll_seconds: float = HEALTH_POLL_SECONDS,
    ) -> None:
        assert config.update is not None, "the control plane is update.server"
        self.config = config
        self.settings = config.reachability
        self.url = config.update.server.rstrip("/") + PATH
        self.ca_bundle = config.update.ca_bundle
        self.identity = IdentitySource.in_config_dir(config.node_config_path())
        self.healthy = healthy
        self.reports = reports
        self.version = version
        self.process = process
        self.health_poll_seconds = health_poll_seconds
        self._state_path = config.state_path() / STATE_FILE
        self.last: dict[str, Any] | None = self._load()
        self.address: str | None = None
        self.last_error: str | None = None
        self.last_attempt_at: float | None = None
        self.checking = False
        self._next_at: float | None = None  # monotonic

    # -- the status ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "checking": self.checking,
            "interval_seconds": self.settings.interval_seconds,
            "next_check_in": None
            if self._next_at is None
            else max(0.0, self._next_at - time.monotonic()),
            "last_attempt_at": self.last_attempt_at,
            "last_error": self.last_error,
            "last": self.last,
        }

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Ask once the node is healthy, then as ``next_delay`` says; until cancelled."""
        while True:
            while not self._healthy():
                await asyncio.sleep(self.health_poll_seconds)
            try:
                asked = await self.ask()
            except Exception as exc:  # a bug of ours: the loop goes on, the log says why
                log.exception("reachability check failed")
                asked = Asked(None, error=f"{type(exc).__name__}: {exc}")
            delay = next_delay(asked, self.settings.interval_seconds, self.settings.retry_seconds)
            self._next_at = time.monotonic() + delay
            await asyncio.sleep(delay)
            self._next_at = None

    def _healthy(self) -> bool:
        try:
            return bool(self.healthy())
        except Exception:
            log.exception("cannot tell whether the node is healthy")
            return False

    async def ask(self) -> Asked:
        """One request, recorded in the status (and the report when it is news)."""
        self.checking = True
        self.last_attempt_at = time.time()
        try:
            asked = await self._request()
        finally:
            self.checking = False
        if asked.result is not None:
            self._after(asked.result)
            self.last_error = None
        else:
            self.last_error = asked.error
            log.info("reachability check: %s", asked.error)
        return asked

    async def _request(self) -> Asked:
        address, where = declared_address(self.config)
        self.address = address
        if address is None:
            return Asked(None, error=where)
        try:
            identity = self.identity.get()
        except IdentityError as exc:
            return Asked(None, error=str(exc))
        body = json.dumps({"node_id": identity.node_id_text, "address": address}).encode()
        headers = {"Content-Type": "application/json", **sign_report(body, identity.key)}
        deadline = self.settings.request_deadline_seconds
        try:
            async with (
                asyncio.timeout(deadline),
                httpx.AsyncClient(
                    timeout=deadline, verify=self.ca_bundle or True, follow_redirects=False
                ) as client,
                client.stream("POST", self.url, content=body, headers=headers) as answer,
            ):
                data = await _read_some(answer)
                status, retry = answer.status_code, answer.headers.get("retry-after")
        except TimeoutError:
            return Asked(None, error=f"the control plane did not answer within {deadline:g} s")
        except (httpx.HTTPError, OSError, ValueError) as exc:
            return Asked(None, error=f"cannot reach the control plane: {exc or type(exc).__name__}")
        retry_after = parse_retry_after(retry, time.time())
        parsed = _json(data)
        if status == 200:
            result = valid_result(parsed)
            if result is None:
                return Asked(status, retry_after, error="the answer was not a check's result")
            return Asked(status, retry_after, result)
        said = parsed.get("error") if isinstance(parsed, dict) else None
        text = " ".join(str(said or data[:200].decode("utf-8", "replace")).split())[:500]
        return Asked(status, retry_after, error=f"the control plane refused ({status}): {text}")

    # -- what a result changes -------------------------------------------------------------

    def _after(self, result: dict[str, Any]) -> None:
        previous, self.last = self.last, result
        if becomes_unreachable(previous, result):
            log.warning("the node is unreachable from outside: %s", result["detail"])
            if self.reports is not None:
                self.reports.report(
                    "unreachable",
                    result["detail"],
                    process=self.process,
                    version=self.version() or "0.0.0",
                    tcp=result["tcp"],
                    udp=result["udp"],
                    address=result["address"],
                )
        elif previous is None or (previous["tcp"], previous["udp"]) != (
            result["tcp"],
            result["udp"],
        ):
            log.info("reachability: %s", result["detail"])
        self._save()

    def _load(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self._state_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("cannot read %s (%s); starting afresh", self._state_path, exc)
            return None
        return valid_result(data.get("last") if isinstance(data, dict) else None)

    def _save(self) -> None:
        try:
            self._state_path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(self._state_path, json.dumps({"last": self.last}).encode())
        except OSError as exc:  # costs at most a repeated report after a restart
            log.warning("cannot write %s: %s", self._state_path, exc)


async def _read_some(response: httpx.Response) -> bytes:
    got = bytearray()
    async for chunk in response.aiter_raw():
        got += chunk
        if len(got) >= MAX_ANSWER_BYTES:
            break
    return bytes(got[:MAX_ANSWER_BYTES])


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None
