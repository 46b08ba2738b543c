"""Signed-release fixtures for the control-plane tests (decision 084): real keys made by
`nodekeeper keys create`, a real control plane holding the online ones, and a real
`tuf.ngclient.Updater` reading the server's metadata over loopback HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tuf.ngclient import Updater

from nodekeeper.signing.layout import metadata_url
from tests.support import run_main

from .controlplane import ControlPlane


@dataclass
class Keys:
    offline: Path
    online: Path

    @property
    def root_file(self) -> Path:
        return self.offline / "1.root.json"

    @property
    def targets_key(self) -> Path:
        return self.offline / "targets-1.pem"

    def root_key(self, n: int) -> Path:
        return self.offline / f"root-{n}.pem"


def make_keys(where: Path) -> Keys:
    """Unencrypted (--no-passphrase) so that the tests need no prompt; the encrypted form is
    tested on its own (test_tuf_keys_cli.py)."""
    keys = Keys(where / "offline", where / "online")
    result = run_main(
        [
            "keys",
            "create",
            "--offline-dir",
            str(keys.offline),
            "--online-dir",
            str(keys.online),
            "--no-passphrase",
        ]
    )
    assert result.returncode == 0, result.stderr
    return keys


def signing_server(data_dir: Path, keys: Keys, db_url: str | None = None, **kw) -> ControlPlane:
    extra = ["--tuf-online-keys", str(keys.online), *kw.pop("extra_args", [])]
    return ControlPlane(data_dir, db_url, extra_args=extra, **kw)


def updater(server: ControlPlane | str, keys: Keys, cache: Path) -> Updater:
    """A keeper's view of ``server`` (a control plane or its URL): bootstrapped with the
    shipped root, its metadata cached in ``cache`` across calls, refreshed once."""
    cache.mkdir(parents=True, exist_ok=True)
    url = server if isinstance(server, str) else server.url
    u = Updater(
        metadata_dir=str(cache),
        metadata_base_url=metadata_url(url),
        bootstrap=keys.root_file.read_bytes(),
    )
    u.refresh()
    return u
