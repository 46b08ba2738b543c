"""``[update] trusted_root`` and ``tuf_metadata_url`` (decision 085): a keeper told to
verify releases must start with a root it can verify against, refused with a message
that says how to fix it; the settings the updater gets; and the status line and metric of
a keeper that installs unsigned releases."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Timestamp

from nodekeeper.keeper.config import ConfigError, load_config
from nodekeeper.keeper.metrics import StatusCollector
from nodekeeper.keeper.status_view import UNSIGNED_WARNING, status_problems
from nodekeeper.keeper.update_settings import UpdateSettings
from tests.updater.tuf_repository import in_days

SERVER = "https://updates.example.com"


def write_config(tmp_path: Path, update: str) -> Path:
    path = tmp_path / "keeper.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\n[update]\nserver = "{SERVER}"\n{update}\n')
    return path


def root_bytes(threshold_signed: bool = True) -> bytes:
    keys = [CryptoSigner.generate_ed25519() for _ in range(2)]
    root = Root(expires=in_days(365))
    for signer in keys:
        root.add_key(signer.public_key, Root.type)
    root.roles[Root.type].threshold = 2
    md = Metadata(root)
    for signer in keys if threshold_signed else keys[:1]:
        md.sign(signer, append=True)
    return md.to_bytes()


def test_a_valid_root_becomes_the_updaters_trust(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "root.json").write_bytes(root_bytes())
    config = load_config(write_config(tmp_path, 'trusted_root = "keys/root.json"'))
    settings = UpdateSettings.from_config(config)
    trust = settings.machine.trust
    assert trust is not None and settings.self_update.trust == trust  # one cache, one lock
    assert trust.trusted_root == tmp_path / "keys" / "root.json"  # relative to the file
    assert trust.metadata_url == f"{SERVER}/tuf/metadata/"
    assert trust.metadata_dir == tmp_path / "data" / "state" / "tuf"
    # Placeholders, and another metadata host.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "root.json").write_bytes(root_bytes())
    update = 'trusted_root = "{data_dir}/root.json"\ntuf_metadata_url = "https://cdn.example.com/m"'
    settings = UpdateSettings.from_config(load_config(write_config(tmp_path, update)))
    assert settings.machine.trust is not None
    assert settings.machine.trust.trusted_root == tmp_path / "data" / "root.json"
    assert settings.machine.trust.metadata_url == "https://cdn.example.com/m/"


def test_without_a_trusted_root_nothing_changes(tmp_path: Path) -> None:
    settings = UpdateSettings.from_config(load_config(write_config(tmp_path, "")))
    assert settings.machine.trust is None and settings.self_update.trust is None


def _timestamp() -> bytes:
    md = Metadata(Timestamp(expires=in_days(1)))
    md.sign(CryptoSigner.generate_ed25519())
    return md.to_bytes()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "root.json: no such file"),
        (b"not json", "not TUF metadata"),
        (_timestamp(), "TUF timestamp metadata, not a root"),
        (root_bytes(threshold_signed=False), "not signed by its own root keys"),
    ],
)
def test_an_unusable_root_is_refused_with_the_fix(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    if content is not None:
        (tmp_path / "root.json").write_bytes(content)
    path = write_config(tmp_path, 'trusted_root = "root.json"')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: update.trusted_root: {tmp_path / 'root.json'}")
    assert expected in message
    assert "set [update] trusted_root to the root.json your release manager published" in message


def test_a_bad_metadata_url_names_its_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write_config(tmp_path, 'tuf_metadata_url = "ftp://x"'))
    assert "update.tuf_metadata_url" in str(refused.value)


def test_status_and_metrics_say_when_releases_are_not_signed() -> None:
    now = time.time()
    assert status_problems({"signed_releases": False}, now) == [UNSIGNED_WARNING]
    assert status_problems({"signed_releases": True}, now) == []
    assert status_problems({"signed_releases": None}, now) == []  # installs nothing
    assert "Fix: set [update] trusted_root" in UNSIGNED_WARNING
    base = {
        "state": "running",
        "restarts": 0,
        "memory": {"soft_limit_restarts": 0, "bytes": None, "soft_limit": None, "hard_limit": None},
        "crash_loop": False,
        "probe": {"consecutive_failures": 0},
        "cpu": {"percent": None},
        "uptime_seconds": None,
        "last_pulse": None,
    }
    for value, gauge in ((False, 0.0), (True, 1.0)):
        families = list(StatusCollector(lambda v=value: {**base, "signed_releases": v}).collect())
        [family] = [f for f in families if f.name == "nodekeeper_update_signed_releases"]
        assert family.samples[0].value == gauge
    families = list(StatusCollector(lambda: {**base, "signed_releases": None}).collect())
    assert not [f for f in families if f.name == "nodekeeper_update_signed_releases"]
