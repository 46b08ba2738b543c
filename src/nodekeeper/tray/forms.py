"""The wizard's and the Settings screen's fields, checked here before anything is sent.

The checks are ``nodekeeper.node_settings``' (decision 067): the ones `storagenode setup`,
the MSI and the keeper's ``POST /setup`` and ``POST /settings`` run, so a value refused
here would be refused there, with the same words. Checking first means an operator sees
every field's error at once, next to the field, and a bad form sends nothing.

Some checks touch the disk (the identity file, free space) or the network (whether the
external address resolves, up to ``RESOLVE_SECONDS``): the app runs :func:`check` on its
worker thread, never on the Tk thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from nodekeeper import node_settings
from nodekeeper.node_settings import InvalidSetting
from nodekeeper.units import format_size

WIZARD_FIELDS = ("identity_dir", "wallet", "email", "external_address", "storage_dir", "allocation")
SETTINGS_FIELDS = WIZARD_FIELDS[1:]
LABELS = {
    "identity_dir": "Identity folder",
    "wallet": "Wallet address",
    "email": "E-mail",
    "external_address": "External address",
    "storage_dir": "Storage folder",
    "allocation": "Allocation",
}
HINTS = {
    "identity_dir": "the folder with identity.key",
    "wallet": "0x and 40 hex digits",
    "email": "for the network's notices",
    "external_address": "HOST:PORT the network reaches",
    "storage_dir": "where the pieces are stored",
    "allocation": 'e.g. "500 GB"',
}
RESOLVE_SECONDS = 5.0


def check(
    values: Mapping[str, str],
    fields: tuple[str, ...],
    resolves: Callable[[str, float], bool] = node_settings.resolves,
) -> dict[str, str]:
    """Every field's error (field -> message); empty when the form may be sent."""
    errors: dict[str, str] = {}

    def run(field: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except InvalidSetting as exc:
            errors.setdefault(exc.field if exc.field in fields else field, exc.message)
            return None

    text = {f: str(values.get(f, "") or "").strip() for f in fields}
    if "identity_dir" in fields:
        if text["identity_dir"]:
            run("identity_dir", lambda: node_settings.check_identity_dir(text["identity_dir"]))
        else:
            errors["identity_dir"] = "choose the folder that holds this node's identity.key"
    if "wallet" in fields:
        run("wallet", lambda: node_settings.check_wallet(text["wallet"]))
    if "email" in fields:
        run("email", lambda: node_settings.check_email(text["email"]))
    if "external_address" in fields:
        address = run("external_address", lambda: node_settings.check_external_address(
            text["external_address"]))  # fmt: skip
        if address is not None:
            host = address.rpartition(":")[0]
            if not resolves(host, RESOLVE_SECONDS):
                errors["external_address"] = (
                    f"the external address's host {host} does not resolve: check the "
                    "spelling, or use the public IP address"
                )
    if "storage_dir" in fields or "allocation" in fields:
        if not text.get("storage_dir"):
            errors["storage_dir"] = "choose the folder where the node keeps its data"
        elif not text.get("allocation"):
            errors["allocation"] = 'write how much space the node may use, e.g. "500 GB"'
        else:
            run("storage_dir", lambda: node_settings.check_storage(
                text["storage_dir"], text["allocation"]))  # fmt: skip
    return errors


def shown_value(field: str, value: Any) -> str:
    """A value from ``GET /settings`` as the field shows it (allocations in bytes as a
    size people read)."""
    if value is None:
        return ""
    if field == "allocation" and isinstance(value, int) and not isinstance(value, bool):
        return format_size(value)
    return str(value)


def changed(values: Mapping[str, str], current: Mapping[str, Any]) -> dict[str, str]:
    """The fields whose text differs from what the keeper has (what ``Save`` sends)."""
    out = {}
    for field in SETTINGS_FIELDS:
        text = str(values.get(field, "") or "").strip()
        if text != shown_value(field, current.get(field)).strip():
            out[field] = text
    return out


def fields_to_check(changes: Mapping[str, str]) -> tuple[str, ...]:
    """The Settings fields to check before sending ``changes``: the changed ones, and the
    storage folder with the allocation when either changed (free space is about both)."""
    fields = set(changes)
    if fields & {"storage_dir", "allocation"}:
        fields |= {"storage_dir", "allocation"}
    return tuple(f for f in SETTINGS_FIELDS if f in fields)
