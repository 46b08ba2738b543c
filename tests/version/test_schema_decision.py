import json
import os

import pytest
from pydantic import ValidationError

from nodekeeper.version.decision import decide_update
from nodekeeper.version.rollout import is_rollout_candidate, percentage_to_cursor
from nodekeeper.version.schema import parse_announcement

SEED = "ab" * 32


def doc(minimum="1.0.0", suggested="1.2.0", seed=SEED, cursor=None, url=None, **extra):
    cursor = cursor or percentage_to_cursor(100).hex()
    url = url or "https://example.org/storagenode_{os}_{arch}.zip"
    return {
        "processes": {
            "storagenode": {
                "minimum": {"version": minimum, "url": url},
                "suggested": {"version": suggested, "url": url, **extra},
                "rollout": {"seed": seed, "cursor": cursor},
            }
        }
    }


def parse(d):
    return parse_announcement(json.dumps(d))


def test_storj_shaped_document_parses_and_ignores_unknown_keys():
    d = doc()
    d["Storagenode"] = {"major": 1, "minor": 0, "patch": 0}  # Storj's legacy keys
    d["processes"]["storagenode"]["rollout"]["future_key"] = 1
    a = parse(d)
    assert a.processes["storagenode"].rollout.active


def test_artifacts_beside_storj_keys():
    art = {"url": "https://cdn.example/sn.zip", "sha256": "0" * 64, "size": 10}
    a = parse(doc(artifacts={"linux_amd64": art}))
    ref = a.processes["storagenode"].suggested
    assert ref.artifact_for("linux", "amd64").size == 10
    assert ref.artifact_for("windows", "amd64") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": "xyz"}, "64 lowercase hex"),
        ({"cursor": "ff" * 31}, "64 lowercase hex"),
        ({"minimum": "2.0.0"}, "must not exceed"),
        ({"suggested": "banana"}, "semantic version"),
        ({"url": "ftp://example.org/x"}, "http"),
        ({"url": "https://example.org/{version}"}, "placeholder"),
        (
            {"artifacts": {"Linux": {"url": "https://a/b", "sha256": "0" * 64, "size": 1}}},
            "os_arch",
        ),
        (
            {"artifacts": {"linux_amd64": {"url": "https://a/b", "sha256": "0" * 64, "size": 0}}},
            "greater",
        ),
    ],
)
def test_invalid_documents_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        parse(doc(**kwargs))


def test_empty_seed_means_no_rollout():
    a = parse(doc(seed=""))
    assert not a.processes["storagenode"].rollout.active
    d = decide_update("1.1.0", a.processes["storagenode"], os.urandom(32))
    assert d.target is None


def test_decision_order():
    node = os.urandom(32)
    everyone = parse(doc(cursor=percentage_to_cursor(100).hex())).processes["storagenode"]
    nobody = parse(doc(cursor=percentage_to_cursor(0).hex())).processes["storagenode"]
    # up to date
    assert decide_update("1.2.0", everyone, node).target is None
    assert decide_update("v1.3.0", everyone, node).target is None
    # below minimum: minimum, regardless of the rollout
    assert decide_update("0.9.0", nobody, node).target == "1.0.0"
    # in between: the rollout decides
    assert decide_update("1.1.0", everyone, node).target == "1.2.0"
    assert decide_update("1.1.0", nobody, node).target is None


def test_decision_follows_hmac():
    cursor = percentage_to_cursor(30)
    a = parse(doc(cursor=cursor.hex())).processes["storagenode"]
    for _ in range(300):
        node = os.urandom(32)
        expected = is_rollout_candidate(node, bytes.fromhex(SEED), cursor)
        assert (decide_update("1.1.0", a, node).target == "1.2.0") is expected
