"""What to fetch (pure): decision, failed-version memory, platform artifacts, URLs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nodekeeper.updater.errors import NoArtifact
from nodekeeper.updater.plan import (
    NoUpdate,
    UpdatePlan,
    expand_url,
    forget_superseded,
    is_failed,
    plan_update,
    remember_failed,
)
from nodekeeper.version.rollout import percentage_to_cursor
from nodekeeper.version.schema import parse_announcement

NODE = bytes(range(32))
SEED = "ab" * 32
SHA = "cd" * 32
PLATFORM = "linux_amd64"


def ref(version: str, platforms: tuple[str, ...] = (PLATFORM,), url: str | None = None) -> dict:
    return {
        "version": version,
        "url": f"https://cp.example/download/storagenode/{version}/{{os}}/{{arch}}",
        "artifacts": {
            p: {
                "url": url or f"https://cdn.example/{version}/storagenode_{{os}}_{{arch}}.zip",
                "sha256": SHA,
                "size": 1000,
            }
            for p in platforms
        },
    }


def doc(minimum: dict, suggested: dict, percent: float = 100, seed: str = SEED) -> Any:
    return parse_announcement(
        json.dumps(
            {
                "processes": {
                    "storagenode": {
                        "minimum": minimum,
                        "suggested": suggested,
                        "rollout": {"seed": seed, "cursor": percentage_to_cursor(percent).hex()},
                    }
                }
            }
        )
    )


def test_rollout_candidate_gets_suggested_with_expanded_url() -> None:
    plan = plan_update(doc(ref("1.0.0"), ref("1.1.0")), "storagenode", "1.0.0", NODE, PLATFORM)
    assert isinstance(plan, UpdatePlan)
    assert plan.version == "1.1.0"
    assert plan.artifact.url == "https://cdn.example/1.1.0/storagenode_linux_amd64.zip"
    assert (plan.artifact.sha256, plan.artifact.size) == (SHA, 1000)
    assert "rollout" in plan.reason


def test_not_in_rollout_means_no_update() -> None:
    result = plan_update(
        doc(ref("1.0.0"), ref("1.1.0"), percent=0), "storagenode", "1.0.0", NODE, PLATFORM
    )
    assert isinstance(result, NoUpdate)
    assert result.skipped_failed is None


def test_below_minimum_gets_minimum_even_outside_the_rollout() -> None:
    plan = plan_update(
        doc(ref("1.0.0"), ref("1.1.0"), percent=0), "storagenode", "0.9.0", NODE, PLATFORM
    )
    assert isinstance(plan, UpdatePlan) and plan.version == "1.0.0"


def test_nothing_installed_yet_starts_at_the_minimum() -> None:
    plan = plan_update(doc(ref("1.0.0"), ref("1.0.0")), "storagenode", "0.0.0", NODE, PLATFORM)
    assert isinstance(plan, UpdatePlan) and plan.version == "1.0.0"


def test_up_to_date_and_unknown_process() -> None:
    d = doc(ref("1.0.0"), ref("1.1.0"))
    assert isinstance(plan_update(d, "storagenode", "1.1.0", NODE, PLATFORM), NoUpdate)
    assert isinstance(plan_update(d, "storagenode", "2.0.0", NODE, PLATFORM), NoUpdate)
    result = plan_update(d, "nodekeeper", "1.0.0", NODE, PLATFORM)
    assert isinstance(result, NoUpdate) and "nothing for nodekeeper" in result.reason


def test_failed_version_is_skipped_until_a_newer_one_is_announced() -> None:
    failed = remember_failed(frozenset(), "v1.1.0")
    result = plan_update(
        doc(ref("1.0.0"), ref("1.1.0")), "storagenode", "1.0.0", NODE, PLATFORM, failed
    )
    assert isinstance(result, NoUpdate)
    assert result.skipped_failed == "1.1.0"
    assert "failed on this node before" in result.reason
    newer = plan_update(
        doc(ref("1.0.0"), ref("1.2.0")), "storagenode", "1.0.0", NODE, PLATFORM, failed
    )
    assert isinstance(newer, UpdatePlan) and newer.version == "1.2.0"


def test_failed_minimum_gives_way_to_the_suggested_version_outside_the_rollout() -> None:
    result = plan_update(
        doc(ref("1.0.0"), ref("1.1.0"), percent=0),
        "storagenode",
        "0.9.0",
        NODE,
        PLATFORM,
        {"1.0.0"},
    )
    assert isinstance(result, UpdatePlan) and result.version == "1.1.0"
    assert "below the minimum 1.0.0, which failed on this node before" in result.reason


def test_failed_minimum_and_failed_suggested_are_both_skipped() -> None:
    result = plan_update(
        doc(ref("1.0.0"), ref("1.1.0")), "storagenode", "0.9.0", NODE, PLATFORM, {"1.0.0", "1.1.0"}
    )
    assert isinstance(result, NoUpdate) and result.skipped_failed == "1.0.0"


def test_minimum_without_artifact_gives_way_to_the_suggested_version() -> None:
    d = doc(ref("1.0.0", platforms=("windows_amd64",)), ref("1.1.0"), percent=0)
    plan = plan_update(d, "storagenode", "0.0.0", NODE, PLATFORM)
    assert isinstance(plan, UpdatePlan) and plan.version == "1.1.0"
    assert "has no artifact with sha256 and size for linux_amd64" in plan.reason


def test_no_artifact_anywhere_below_the_minimum_is_no_artifact() -> None:
    d = doc(ref("1.0.0", platforms=()), ref("1.1.0", platforms=()))
    with pytest.raises(NoArtifact, match=r"storagenode 1\.0\.0 is announced"):
        plan_update(d, "storagenode", "0.0.0", NODE, PLATFORM)


def test_missing_platform_is_no_artifact() -> None:
    d = doc(ref("1.0.0"), ref("1.1.0", platforms=("windows_amd64",)))
    with pytest.raises(NoArtifact, match="no artifact with sha256 and size for linux_amd64"):
        plan_update(d, "storagenode", "1.0.0", NODE, PLATFORM)


def test_storj_only_document_announces_nothing_installable() -> None:
    bare = {"version": "1.1.0", "url": "https://cp.example/x/{os}/{arch}"}
    with pytest.raises(NoArtifact) as info:
        plan_update(doc(ref("1.0.0"), bare), "storagenode", "1.0.0", NODE, PLATFORM)
    assert info.value.kind == "no_artifact"


def test_artifact_found_on_minimum_when_target_is_the_minimum() -> None:
    # minimum == suggested version: either entry may carry the artifacts.
    d = doc(ref("1.1.0"), ref("1.1.0", platforms=()))
    plan = plan_update(d, "storagenode", "1.0.0", NODE, PLATFORM)
    assert isinstance(plan, UpdatePlan) and plan.version == "1.1.0"


def test_plan_round_trips_through_json() -> None:
    plan = plan_update(doc(ref("1.0.0"), ref("1.1.0")), "storagenode", "1.0.0", NODE, PLATFORM)
    assert isinstance(plan, UpdatePlan)
    assert UpdatePlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


@pytest.mark.parametrize(
    ("url", "platform", "expected"),
    [
        ("https://x/{os}/{arch}/a.zip", "windows_amd64", "https://x/windows/amd64/a.zip"),
        ("https://x/a_{os}_{arch}.zip", "linux_arm64", "https://x/a_linux_arm64.zip"),
        ("https://x/fixed.zip", "linux_amd64", "https://x/fixed.zip"),
    ],
)
def test_expand_url(url: str, platform: str, expected: str) -> None:
    assert expand_url(url, platform) == expected


def test_failed_set_helpers() -> None:
    failed = remember_failed(["v1.0.0"], "1.2.0")
    assert failed == frozenset({"1.0.0", "1.2.0"})
    assert is_failed("v1.2.0", failed)
    assert not is_failed("1.2.1", failed)
    assert not is_failed("1.2.0-rc.1", failed)
    assert forget_superseded(failed, "1.1.0") == frozenset({"1.2.0"})
    assert forget_superseded(failed, "1.2.0") == frozenset()
    assert forget_superseded(failed, "0.1.0") == failed
