"""The secrets file: read when only its owner may read it, refused otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodekeeper.alerts import SecretsError, read_secrets

posix_only = pytest.mark.skipif(os.name != "posix", reason="mode bits are POSIX")


def _write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "alerts-secrets.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_file_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path, 'smtp_password = "pw"\nwebhook_token = "wt"\n')
    assert read_secrets(path) == {"smtp_password": "pw", "webhook_token": "wt"}


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_a_file_others_may_read_is_refused_with_the_chmod_to_run(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path, 'smtp_password = "pw"\n', mode)
    with pytest.raises(SecretsError) as caught:
        read_secrets(path)
    message = str(caught.value)
    assert f"(mode {mode:04o})" in message
    assert message.endswith(f"run: chmod 600 {path}")


@posix_only
def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    assert read_secrets(_write(tmp_path, 'push_token = "pt"\n', 0o400)) == {"push_token": "pt"}


def test_a_missing_file_says_which_setting_names_it(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match=r"no such file \(\[alerts\] secrets_file\)"):
        read_secrets(tmp_path / "nope.toml")


def test_bad_toml_is_refused_without_quoting_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'smtp_password = "hunter2\n')
    with pytest.raises(SecretsError) as caught:
        read_secrets(path)
    assert "not valid TOML (line 1)" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('smtp_pasword = "pw"\n', "unknown key(s) smtp_pasword"),
        ("smtp_password = 5\n", "smtp_password must be non-empty strings"),
        ('webhook_token = ""\n', "webhook_token must be non-empty strings"),
    ],
)
def test_unknown_keys_and_non_strings_are_refused(tmp_path: Path, text: str, words: str) -> None:
    with pytest.raises(SecretsError, match=words.replace("(", r"\(").replace(")", r"\)")):
        read_secrets(_write(tmp_path, text))
