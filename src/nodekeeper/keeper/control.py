"""The keeper's actions for the tray app and the CLI (decision 069): restart the node,
pause updates or set a quiet window, change the node's settings, set a new node up.

``keeper.api`` routes the requests and checks the control token before any of these
runs; each method returns ``(HTTP status, JSON body)``. The rules:

- Nothing while an update is being carried out (409): the update machine owns the node
  between its download and its commit. An action takes the update lock for its own
  duration, so no update starts under it either.
- A refused value changes nothing: every field is checked before anything is written
  (400 ``{"errors": {field: message}}``, the messages of ``node_settings``).
- Restarts go through ``Supervisor.switch`` with the command the supervisor runs: a
  graceful stop and an immediate start, no backoff. That also cuts a needs-setup
  recheck short, so a node set up through ``/setup`` starts at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from nodekeeper.keeper import control_token, node_config_file
from nodekeeper.keeper.config import KeeperConfig
from nodekeeper.keeper.supervisor import Supervisor

if TYPE_CHECKING:
    from nodekeeper.keeper.maintenance_store import MaintenanceStore

log = logging.getLogger("nodekeeper.keeper")

Answer = tuple[int, dict[str, Any]]

UPDATING = (
    "an update of the node is being carried out; try again when it is done "
    "(`nodekeeper status` shows its step)"
)
HELD = "the keeper holds the node stopped on purpose until the cause is gone"
NOTHING_INSTALLED = (
    "nothing is installed to run yet: the keeper installs the node from the control plane "
    "first (`nodekeeper status` says why it has not)"
)
NO_UPDATES = (
    "this keeper has no [update] table, so it holds no updates: add [update] with "
    "server = ... to its config and restart it"
)
# The switch waits for the node's graceful stop (stop.timeout_seconds) and its start.
START_MARGIN_SECONDS = 30.0


class Control:
    def __init__(
        self,
        config: KeeperConfig,
        supervisor: Supervisor,
        token: str,
        *,
        update_lock: asyncio.Lock | None = None,
        maintenance: MaintenanceStore | None = None,
        below_minimum: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.supervisor = supervisor
        self.token = token
        self.update_lock = update_lock or asyncio.Lock()
        self.maintenance = maintenance
        self.below_minimum = below_minimum

    def authorized(self, authorization: str | None) -> bool:
        return control_token.matches(self.token, authorization)

    # -- reads (no token) ----------------------------------------------------------------

    def maintenance_status(self) -> dict[str, Any] | None:
        """The status API's ``maintenance`` dict; None without ``[update]``."""
        if self.maintenance is None:
            return None
        return self.maintenance.status(self.below_minimum())

    def settings(self) -> Answer:
        config_dir = self.config.node_config_path()
        set_up = node_config_file.is_set_up(config_dir)
        needs = not set_up or self.supervisor.observe().state == "needs-setup"
        document = node_config_file.read_document(config_dir) if set_up else None
        return 200, {"needs_setup": needs, "values": node_config_file.values(document)}

    # -- actions -------------------------------------------------------------------------

    async def restart(self, _body: dict[str, Any]) -> Answer:
        async with self._no_update() as refused:
            if refused is not None:
                return refused
            return await self._restart({"restarted": True})

    def pause(self, body: dict[str, Any]) -> Answer:
        if self.maintenance is None:
            return 404, {"error": NO_UPDATES}
        try:
            self.maintenance.pause(body.get("until"))
        except ValueError as exc:
            return 400, {"errors": {"until": str(exc)}}
        except OSError as exc:
            return 500, {"error": f"cannot save the pause: {exc}"}
        log.info("updates: %s", self._said())
        return 200, self.maintenance_status() or {}

    def quiet_window(self, body: dict[str, Any]) -> Answer:
        if self.maintenance is None:
            return 404, {"error": NO_UPDATES}
        window = body.get("window")
        if window is not None and not isinstance(window, str):
            return 400, {"errors": {"window": "write it as HH:MM-HH:MM, or null to clear it"}}
        try:
            self.maintenance.set_window(window)
        except ValueError as exc:
            return 400, {"errors": {"window": str(exc)}}
        except OSError as exc:
            return 500, {"error": f"cannot save the quiet window: {exc}"}
        log.info("updates: quiet window %s; %s", window or "cleared", self._said())
        return 200, self.maintenance_status() or {}

    async def apply_settings(self, body: dict[str, Any]) -> Answer:
        config_dir = self.config.node_config_path()
        document = node_config_file.read_document(config_dir)
        if document is None or not node_config_file.is_set_up(config_dir):
            return 409, {"error": "the node is not set up yet: set it up first (POST /setup)"}
        async with self._no_update() as refused:
            if refused is not None:
                return refused
            try:
                change = node_config_file.plan_change(
                    config_dir, document, body, self._used_bytes()
                )
            except node_config_file.SettingsRefused as exc:
                return 400, {"errors": exc.errors}
            if not change.applied:
                return 200, {"applied": [], "restarted": False}
            try:
                node_config_file.write(config_dir, change.document)
            except OSError as exc:
                return 500, {"error": f"cannot write the node's config: {exc}"}
            log.info("node settings changed: %s; restarting the node", ", ".join(change.applied))
            if self.supervisor.command is None:
                return 200, {"applied": change.applied, "restarted": False}
            return await self._restart({"applied": change.applied, "restarted": True})

    async def set_up(self, body: dict[str, Any]) -> Answer:
        # Loaded here: a node is set up once, and the keeper's idle memory is measured
        # against a target (bench/supervisor_bench.py).
        from nodekeeper.keeper import node_setup

        config_dir = self.config.node_config_path()
        if node_config_file.is_set_up(config_dir):
            return 409, {
                "error": f"the node in {config_dir} is set up already: change its settings "
                "instead (POST /settings)"
            }
        try:
            plan = node_setup.check(body)
        except node_setup.SetupRefused as exc:
            return 400, {"errors": exc.errors}
        async with self._no_update() as refused:
            if refused is not None:
                return refused
            command = self.supervisor.command
            if command is None:
                return 409, {"error": NOTHING_INSTALLED}
            argv = node_setup.setup_argv(command, config_dir, plan, self.config.probe.url)
            if argv is None:
                return 409, {
                    "error": "cannot tell the node's setup command from its command line "
                    f"{command} (no `run` in it): run its setup by hand"
                }
            try:
                await node_setup.run_setup(argv, self.config.node_env(), self.config.node_cwd())
            except node_setup.SetupRefused as exc:
                return 400, {"errors": exc.errors}
            log.info("the node was set up through the status API; starting it")
            return await self._restart({"set_up": True})

    # -- helpers -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _no_update(self) -> AsyncIterator[Answer | None]:
        """Holds the update lock for the action, or yields the 409 when an update (or
        the keeper's own) is being carried out."""
        if self.update_lock.locked():
            yield 409, {"error": UPDATING}
            return
        async with self.update_lock:
            yield None

    async def _restart(self, answer: dict[str, Any]) -> Answer:
        command = self.supervisor.command
        if command is None:
            return 409, {"error": NOTHING_INSTALLED}
        held = self.supervisor.held
        if held is not None:  # a restart would start nothing (decision 070): say why
            return 409, {"error": f"{HELD}: {held.reason}. {held.fix}".rstrip()}
        deadline = self.config.stop.timeout_seconds + START_MARGIN_SECONDS
        try:
            # shield: a caller that hangs up must not leave the switch half-done.
            await asyncio.wait_for(asyncio.shield(self.supervisor.switch(command)), deadline)
        except TimeoutError:
            return 504, {"error": f"the node did not start again within {deadline:g} s"}
        return 200, answer

    def _used_bytes(self) -> int:
        pulse = self.supervisor.observe().pulse or {}
        used = pulse.get("used_bytes")
        return used if isinstance(used, int) and not isinstance(used, bool) else 0

    def _said(self) -> str:
        status = self.maintenance_status() or {}
        verdict = status.get("verdict") or {}
        return str(verdict.get("why") or "allowed now")
