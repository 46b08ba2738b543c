"""The Alert value and the [alerts] table."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from nodekeeper.alerts import KINDS, Alert, AlertsConfig, SecretsError
from nodekeeper.alerts.dispatch import channels_from_config


def test_the_json_form_carries_every_field_and_both_times() -> None:
    alert = Alert("node_offline", "warning", "t", "m", "f", node_id="n", time=0.0)
    assert alert.to_json() == {
        "kind": "node_offline",
        "severity": "warning",
        "title": "t",
        "message": "m",
        "fix": "f",
        "node_id": "n",
        "timestamp": 0.0,
        "time": "1970-01-01T00:00:00+00:00",
    }
    assert Alert.from_json(alert.to_json()) == alert


def test_the_known_kinds_are_valid_alerts() -> None:
    for kind in KINDS:
        assert Alert(kind, "error", "t", "m").key == kind
    assert Alert("crash_loop", "error", "t", "m", node_id="n1").key == "n1/crash_loop"


@pytest.mark.parametrize(
    ("kind", "severity"), [("", "error"), ("crash loop", "error"), ("a/b", "error"), ("x", "bad")]
)
def test_a_bad_kind_or_severity_is_refused(kind: str, severity: str) -> None:
    with pytest.raises(ValueError):
        Alert(kind, severity, "t", "m")  # type: ignore[arg-type]


def test_the_text_has_the_fix_node_and_time() -> None:
    alert = Alert("disk_full", "error", "t", "Full.", "Free space.", node_id="n", time=0.0)
    assert alert.text() == (
        "Full.\n\nFix: Free space.\n\nNode: n\n\nTime: 1970-01-01T00:00:00+00:00"
    )


def test_no_channel_table_means_no_alerts() -> None:
    config = AlertsConfig()
    assert not config.enabled
    assert channels_from_config(config) == []


def test_every_channel_table_gives_its_channel() -> None:
    config = AlertsConfig.model_validate(
        {
            "webhook": {"url": "https://example.com/hook?key=1"},
            "push": {"url": "https://ntfy.sh/my-node"},
            "email": {
                "host": "smtp.example.com",
                "sender": "n@example.com",
                "recipients": ["o@example.com"],
            },
        }
    )
    assert config.enabled
    names = [c.name for c in channels_from_config(config, {})]
    assert names == ["webhook", "push", "email"]


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"webhook": {"url": "ftp://example.com"}}, "http:// or https://"),
        ({"push": {"url": "ntfy.sh/topic"}}, "http:// or https://"),
        ({"push": {"url": "https://ntfy.sh/t", "token": "x"}}, "Extra inputs"),
        ({"email": {"host": "h", "sender": "n", "recipients": ["o@example.com"]}}, "one @"),
        ({"email": {"host": "h", "sender": "n@example.com", "recipients": []}}, "at least 1"),
        ({"debounce_minutes": 0}, "greater than 0"),
        ({"timeout_seconds": 20, "deadline_seconds": 10}, "at least timeout_seconds"),
        ({"channels": []}, "Extra inputs"),
    ],
)
def test_bad_tables_are_refused(table: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        AlertsConfig.model_validate(table)


def test_a_login_without_a_password_in_the_secrets_is_refused(tmp_path: Path) -> None:
    config = AlertsConfig.model_validate(
        {
            "email": {
                "host": "h",
                "username": "u",
                "sender": "n@example.com",
                "recipients": ["o@example.com"],
            }
        }
    )
    with pytest.raises(SecretsError, match="no smtp_password"):
        channels_from_config(config, {})
