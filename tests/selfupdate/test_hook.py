"""The keeper's side, in-process: ``handover.hand_over`` and its checks, the exit code,
outcome delivery, the release entry's ``version``, and ``SelfUpdater`` fetching real
release zips from a real HTTP server (good, corrupted, failing preflight)."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from logging import ERROR
from pathlib import Path
from typing import Any

import pytest

from nodekeeper import __version__
from nodekeeper.launcher import manifest as launcher_manifest
from nodekeeper.launcher import statefile
from nodekeeper.launcher.decide import Outcome, Pending, State
from nodekeeper.launcher.protocol import (
    ENV_RUNNING,
    ENV_STATE_DIR,
    ENV_VERSIONS_DIR,
    EXIT_SELF_UPDATE,
    state_dir,
    versions_dir,
)
from nodekeeper.selfupdate import entry, handover
from nodekeeper.selfupdate.handover import LauncherLink, SelfUpdateError
from nodekeeper.selfupdate.runner import SelfUpdater, SelfUpdateSettings
from nodekeeper.updater.plan import UpdatePlan
from nodekeeper.version.schema import Artifact
from tests.selfupdate.keepers import build_keeper, install
from tests.updater.httpserver import FileServer


@pytest.fixture(autouse=True)
def fresh_process_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """hand_over marks the process; each test starts as a keeper that has not."""
    monkeypatch.setattr(handover, "_handed_over", None)


@pytest.fixture
def link(tmp_path: Path) -> LauncherLink:
    link = LauncherLink(state_dir(tmp_path), versions_dir(tmp_path), running="1.0.0")
    link.state_dir.mkdir(parents=True)
    statefile.save_state(link.state_dir, State(current="1.0.0"))
    return link


class Calls:
    """A shutdown function that counts its calls."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def test_link_comes_from_the_launchers_environment(tmp_path: Path) -> None:
    env = {ENV_STATE_DIR: str(tmp_path / "s"), ENV_VERSIONS_DIR: str(tmp_path / "v")}
    assert handover.launcher_link({}) is None
    assert handover.launcher_link({ENV_STATE_DIR: "x"}) is None
    assert handover.launcher_link(env) == LauncherLink(tmp_path / "s", tmp_path / "v", None)
    link = handover.launcher_link({**env, ENV_RUNNING: "1.2.3"})
    assert link is not None and link.running == "1.2.3"


def test_hand_over_writes_the_request_then_stops_the_keeper(
    link: LauncherLink, tmp_path: Path
) -> None:
    target = install(build_keeper("good", "1.1.0", tmp_path / "rel"), link.versions_dir)
    stop = Calls()
    assert handover.exit_code(0) == 0
    handover.hand_over(target, "v1.1.0", shutdown=stop, link=link)
    assert stop.count == 1
    assert statefile.read_request(link.state_dir) == "1.1.0"
    assert handover.handed_over() == "1.1.0"
    # A keeper that stopped cleanly after a hand-over exits for the launcher; one that
    # failed on its way out keeps its own code (the launcher treats it as a crash).
    assert handover.exit_code(0) == EXIT_SELF_UPDATE
    assert handover.exit_code(1) == 1


def _refused(link: LauncherLink | None, install_dir: Path, version: str, match: str) -> None:
    stop = Calls()
    with pytest.raises(SelfUpdateError, match=match):
        handover.hand_over(install_dir, version, shutdown=stop, link=link)
    assert stop.count == 0 and handover.handed_over() is None
    if link is not None:
        assert statefile.read_request(link.state_dir) is None


def test_not_under_a_launcher_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_STATE_DIR, raising=False)
    _refused(None, tmp_path, "1.1.0", "not started by nodekeeper-launcher")


def test_refusals_happen_before_anything_stops(link: LauncherLink, tmp_path: Path) -> None:
    good = install(build_keeper("good", "1.1.0", tmp_path / "rel"), link.versions_dir)
    elsewhere = install(build_keeper("good", "1.1.0", tmp_path / "rel"), tmp_path / "other")
    _refused(link, elsewhere, "1.1.0", "must be installed in")
    _refused(link, good, "1.2.0", "must be installed in")
    bare = link.versions_dir / "1.3.0"
    bare.mkdir()
    _refused(link, bare, "1.3.0", "cannot be started")
    statefile.save_state(link.state_dir, State(current="1.0.0", failed=("1.1.0",)))
    _refused(link, good, "1.1.0", "failed before")
    statefile.save_state(link.state_dir, State(current="1.1.0"))
    _refused(link, good, "1.1.0", "running already")


def test_failed_and_protected_versions(link: LauncherLink) -> None:
    statefile.save_state(
        link.state_dir,
        State(current="2.0.0", previous="1.0.0", pending=Pending("3.0.0", 1), failed=("2.5.0",)),
    )
    assert handover.failed_versions(link) == {"2.5.0"}
    assert handover.protected_versions(link) == {"1.0.0", "2.0.0", "3.0.0"}
    running_old = LauncherLink(link.state_dir, link.versions_dir, running="0.9.0")
    assert "0.9.0" in handover.protected_versions(running_old)
    assert handover.failed_versions(None) == frozenset()
    assert handover.protected_versions(None) == frozenset()


def _outcome(kind: Any, version: str, at: float) -> Outcome:
    return Outcome(f"{at}-{kind}-{version}", kind, version, "1.0.0", "exited", "why", at)


def test_outcomes_become_reports_and_failures_error_entries_once(link: LauncherLink) -> None:
    outcomes = (
        _outcome("committed", "1.0.0", 1.0),
        _outcome("rolled_back", "1.1.0", 2.0),
        _outcome("refused", "1.1.0", 3.0),
    )
    statefile.save_state(link.state_dir, State(current="1.0.0", outcomes=outcomes))
    reports: list[tuple[Any, ...]] = []
    errors: list[tuple[Any, ...]] = []

    def report(kind: str, message: str, **fields: Any) -> None:
        reports.append(
            (
                kind,
                fields["process"],
                fields["version"],
                fields["target_version"],
                fields["at"],
                fields["reason"],
            )
        )

    def record(source: str, level: str, message: str, **fields: Any) -> None:
        errors.append((source, level, fields["target_version"], fields["timestamp"]))

    def deliver() -> list[Outcome]:
        return handover.deliver_outcomes(
            link, running_version="1.0.0", report=report, record_error=record
        )

    assert deliver() == list(outcomes)
    assert reports == [
        ("update_succeeded", "nodekeeper", "1.0.0", "1.0.0", 1.0, "exited"),
        ("rolled_back", "nodekeeper", "1.0.0", "1.1.0", 2.0, "exited"),
        ("update_failed", "nodekeeper", "1.0.0", "1.1.0", 3.0, "exited"),
    ]
    assert errors == [("keeper", ERROR, "1.1.0", 2.0), ("keeper", ERROR, "1.1.0", 3.0)]
    assert deliver() == []  # delivered once
    # A new one later: only it is delivered; ids of outcomes the launcher pruned go.
    later = _outcome("rolled_back", "1.2.0", 4.0)
    statefile.save_state(link.state_dir, State(current="1.0.0", outcomes=(outcomes[2], later)))
    assert deliver() == [later]
    assert statefile.read_delivered(link.state_dir) == {outcomes[2].id, later.id}
    assert (
        handover.deliver_outcomes(None, running_version="1", report=report, record_error=record)
        == []
    )


def test_release_entry_prints_its_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert entry.main(["version"]) == 0
    assert capsys.readouterr().out == f"Version: {__version__}\n"


@pytest.mark.timeout(60)
def test_old_entry_name_still_runs_the_keeper_entry() -> None:
    """``nodekeeper.launched`` is what launchers and releases from before the
    ``selfupdate`` package name: run as a launcher runs the runtime's keeper, it is the
    same entry."""
    argv = launcher_manifest.runtime_argv(sys.executable, ["version"])
    argv[argv.index(launcher_manifest.RUNTIME_ENTRY)] = "nodekeeper.launched"
    done = subprocess.run(argv, capture_output=True, text=True, timeout=50, check=False)
    assert (done.returncode, done.stdout) == (0, f"Version: {__version__}\n"), done.stderr


# -- SelfUpdater against a real HTTP server ------------------------------------------------


@pytest.fixture
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


def plan_for(files: FileServer, zip_path: Path, version: str, corrupt: bool = False) -> UpdatePlan:
    data = zip_path.read_bytes()
    url = files.add(f"/{zip_path.name}", data)
    digest = hashlib.sha256(b"other bytes" if corrupt else data).hexdigest()
    artifact = Artifact(url=url, sha256=digest, size=len(data))
    return UpdatePlan("nodekeeper", version, "linux_amd64", artifact, "test")


class Recorder:
    """Collects what the updater reports and indexes (the real Reporter and ErrorIndex
    are tested with their own modules)."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, str | None]] = []
        self.errors: list[str] = []

    def report(self, kind: str, message: str, **fields: Any) -> None:
        self.reports.append((kind, fields.get("target_version")))

    def record(self, source: str, level: int, message: str, **fields: Any) -> None:
        self.errors.append(fields["reason"])


def updater_for(link: LauncherLink, tmp_path: Path, stop: Calls, rec: Recorder) -> SelfUpdater:
    settings = SelfUpdateSettings(platform="linux_amd64", data_dir=tmp_path)
    return SelfUpdater(settings, link, stop, reports=rec, errors=rec, version="1.0.0")


@pytest.mark.timeout(60)
def test_self_updater_installs_preflights_and_hands_over(
    link: LauncherLink, tmp_path: Path, files: FileServer
) -> None:
    stop, rec = Calls(), Recorder()
    updater = updater_for(link, tmp_path, stop, rec)
    plan = plan_for(files, build_keeper("good", "1.1.0", tmp_path / "rel"), "1.1.0")
    assert asyncio.run(updater.run(plan)) == "handed-over"
    assert stop.count == 1 and statefile.read_request(link.state_dir) == "1.1.0"
    assert (link.versions_dir / "1.1.0" / "nodekeeper-artifact.json").exists()
    assert rec.reports == [] and rec.errors == []
    assert updater.snapshot()["handed_over"] == "1.1.0"
    assert asyncio.run(updater.run(plan)) == "handed-over"  # no second hand-over
    assert stop.count == 1


@pytest.mark.timeout(60)
def test_self_updater_failures_keep_the_keeper_running(
    link: LauncherLink, tmp_path: Path, files: FileServer
) -> None:
    stop, rec = Calls(), Recorder()
    updater = updater_for(link, tmp_path, stop, rec)
    # Corrupted on the way: not remembered (the next cycle downloads again).
    corrupt = plan_for(files, build_keeper("good", "1.1.0", tmp_path / "rel"), "1.1.0", True)
    assert asyncio.run(updater.run(corrupt)) == "failed"
    assert "1.1.0" not in updater.state.failed
    # Fails preflight: remembered until a newer one.
    broken = plan_for(files, build_keeper("broken_version", "1.2.0", tmp_path / "rel"), "1.2.0")
    assert asyncio.run(updater.run(broken)) == "failed"
    assert "1.2.0" in updater.state.failed
    assert not (link.versions_dir / "1.2.0").exists()  # the failed install was discarded
    assert rec.reports == [("verification_failed", "1.1.0"), ("update_failed", "1.2.0")]
    assert rec.errors == ["verification_failed", "preflight_failed"]
    assert stop.count == 0 and statefile.read_request(link.state_dir) is None
    # Versions the launcher remembers as failed count too.
    statefile.save_state(link.state_dir, State(current="1.0.0", failed=("1.3.0",)))
    assert updater.state.failed == {"1.2.0", "1.3.0"}
    # A keeper restarted later still knows 1.2.0 failed its preflight here.
    restarted = updater_for(link, tmp_path, stop, rec)
    assert restarted.state.failed == {"1.2.0", "1.3.0"}


def test_self_updater_sweep_keeps_what_the_launcher_may_start(
    link: LauncherLink, tmp_path: Path
) -> None:
    for version in ("0.8.0", "0.9.0", "1.0.0", "1.1.0", "1.2.0"):
        (link.versions_dir / version).mkdir(parents=True)
    statefile.save_state(
        link.state_dir, State(current="1.1.0", previous="1.0.0", pending=Pending("1.2.0", 1))
    )
    rec = Recorder()
    updater = updater_for(link, tmp_path, Calls(), rec)
    updater.version = "0.9.0"  # what this process runs (a fallback, say)
    updater.sweep()
    assert sorted(p.name for p in link.versions_dir.iterdir()) == [
        "0.9.0",
        "1.0.0",
        "1.1.0",
        "1.2.0",
    ]


def test_self_updater_reports_the_launchers_outcomes_each_cycle(
    link: LauncherLink, tmp_path: Path
) -> None:
    rec = Recorder()
    updater = updater_for(link, tmp_path, Calls(), rec)
    updater.sweep()
    assert rec.reports == []
    committed = Outcome("c1", "committed", "1.1.0", "1.1.0", "healthy", "", 1.0)
    statefile.save_state(link.state_dir, State(current="1.1.0", outcomes=(committed,)))
    updater.sweep()
    updater.sweep()
    assert rec.reports == [("update_succeeded", "1.1.0")] and rec.errors == []
