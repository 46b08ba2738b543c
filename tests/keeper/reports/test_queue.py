"""The on-disk queue and the outbox around it: durability, order, caps, the drop
counter, rejected reports, restarts, and a disk that refuses writes."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from nodekeeper.durable import write_durably
from nodekeeper.keeper.reports.outbox import Outbox
from nodekeeper.keeper.reports.queue import QueueLimits, ReportQueue
from nodekeeper.keeper.reports.record import (
    MAX_MESSAGE_CHARS,
    build_report,
    decode_record,
    encode_record,
    make_record,
)
from nodekeeper.version.reports import MAX_REPORT_BYTES, encode_report, new_report_id

NODE = "12RnCzxJpXDrnoWjTK9vnEeYcyrWXrHmfvZDU5Gz5WkPgfTdHjV"


def record(kind: str = "update_succeeded", n: int = 0, **details: Any) -> dict[str, Any]:
    return make_record(
        kind,  # type: ignore[arg-type]
        f"{kind} {n}",
        process="storagenode",
        version="1.0.0",
        target_version=None,
        at=time.time(),
        report_id=new_report_id(),
        node_id=None,
        details={"n": n, **details},
    )


def ns(queue: ReportQueue) -> list[int]:
    return [queue.read(e)["report"]["details"]["n"] for e in queue.entries()]


def test_records_are_durable_ordered_and_survive_a_restart(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path)
    for n in range(5):
        q.put(record("hang" if n % 2 else "update_succeeded", n))
    assert len(q) == 5 and ns(q) == [0, 1, 2, 3, 4]
    files = sorted(p.name for p in (tmp_path / "queue").iterdir())
    assert files == [f"{i:020d}.json" for i in range(1, 6)]
    again = ReportQueue(tmp_path)
    assert ns(again) == [0, 1, 2, 3, 4]
    assert [e.failure for e in again.entries()] == [False, True, False, True, False]
    again.remove(again.entries()[0])
    third = ReportQueue(tmp_path)
    assert ns(third) == [1, 2, 3, 4]
    third.put(record(n=5))  # numbering continues after the newest, order is kept
    assert ns(ReportQueue(tmp_path)) == [1, 2, 3, 4, 5]


def test_half_written_files_are_ignored_and_removed(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path)
    q.put(record(n=0))
    # What a writer killed between create and rename leaves behind.
    (tmp_path / "queue" / ".00000000000000000002.json.ab12cd34.tmp").write_bytes(b'{"form')
    (tmp_path / ".dropped.json.0000.tmp").write_bytes(b"")
    again = ReportQueue(tmp_path)
    assert ns(again) == [0]
    assert sorted(p.name for p in (tmp_path / "queue").iterdir()) == ["00000000000000000001.json"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_corrupt_record_is_moved_aside_not_blocking(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path)
    for n in range(3):
        q.put(record(n=n))
    (tmp_path / "queue" / "00000000000000000002.json").write_bytes(b"\x00garbage")
    again = ReportQueue(tmp_path)
    assert ns(again) == [0, 2]
    [aside] = list((tmp_path / "rejected").iterdir())
    note = json.loads(aside.read_text())
    assert note["status"] is None and note["reason"].startswith("unreadable")
    assert "garbage" in note["record"]


def test_full_queue_drops_oldest_heartbeats_then_oldest_failures(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path, QueueLimits(max_count=4, max_bytes=1 << 20))
    q.put(record("hang", 0))
    q.put(record("update_succeeded", 1))
    q.put(record("crash_loop", 2))
    q.put(record("update_succeeded", 3))
    q.put(record("rolled_back", 4))
    assert ns(q) == [0, 2, 3, 4] and q.dropped == 1
    q.put(record("hang", 5))
    assert ns(q) == [0, 2, 4, 5] and q.dropped == 2
    q.put(record("hang", 6))  # no heartbeats left: the oldest failure goes
    assert ns(q) == [2, 4, 5, 6] and q.dropped == 3
    assert q.put(record("update_succeeded", 7)) is None  # a success loses to failures
    assert ns(q) == [2, 4, 5, 6] and q.dropped == 4
    # The counter and the survivors outlive a restart.
    again = ReportQueue(tmp_path, QueueLimits(max_count=4, max_bytes=1 << 20))
    assert ns(again) == [2, 4, 5, 6] and again.dropped == 4
    # Lower caps at start drop at once (and count it).
    smaller = ReportQueue(tmp_path, QueueLimits(max_count=2, max_bytes=1 << 20))
    assert ns(smaller) == [5, 6] and smaller.dropped == 6


def test_byte_cap(tmp_path: Path) -> None:
    limits = QueueLimits(max_count=1000, max_bytes=64 * 1024)
    q = ReportQueue(tmp_path, limits)
    for n in range(40):
        q.put(record("update_succeeded", n, pad="x" * 3000))
    assert q.total_bytes <= 64 * 1024
    assert sum(p.stat().st_size for p in (tmp_path / "queue").iterdir()) == q.total_bytes
    assert ns(q)[-1] == 39 and q.dropped == 40 - len(q)


def test_report_in_flight_is_never_dropped_and_claims_the_count(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path, QueueLimits(max_count=2, max_bytes=1 << 20))
    q.put(record("update_succeeded", 0))
    q.put(record("update_succeeded", 1))
    head = q.head()
    assert head is not None
    q.pin(head)
    q.put(record("update_succeeded", 2))  # full: 1 goes, 0 is in flight
    assert ns(q) == [0, 2] and q.dropped == 1
    claimed = q.claim_drops(head, q.read(head))
    assert claimed["claimed_drops"] == 1 and q.dropped == 0
    assert q.read(head)["claimed_drops"] == 1  # on disk: a re-send carries the same count
    assert ReportQueue(tmp_path).entries()[0].claimed == 1
    # A retry unpins it; if it is then dropped, its claim goes back with it.
    q.pin(None)
    q.put(record("update_succeeded", 3))
    assert ns(q) == [2, 3] and q.dropped == 2  # itself + the one it carried


def test_rejected_reports_keep_their_claim_and_are_bounded(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path, QueueLimits(max_count=2, max_bytes=1 << 20, rejected_keep=3))
    for n in range(3):
        q.put(record("hang", n))
    assert q.dropped == 1
    head = q.head()
    assert head is not None
    q.claim_drops(head, q.read(head))
    q.reject(head, 401, "HTTP 401: the report was signed by another node's key")
    assert q.dropped == 1  # given back for the next report to tell
    for n in range(3, 9):
        q.put(record("hang", n))
        entry = q.head()
        assert entry is not None
        q.reject(entry, 422, "HTTP 422: malformed")
    kept = sorted(p.name for p in (tmp_path / "rejected").iterdir())
    assert len(kept) == 3  # the newest three
    newest = json.loads((tmp_path / "rejected" / kept[-1]).read_text())
    assert newest["status"] == 422 and decode_record(newest["record"].encode())


def test_make_record_cuts_what_is_too_big_and_refuses_what_is_wrong() -> None:
    big = make_record(
        "hang",
        "m" * 10_000,
        process="storagenode",
        version="1.0.0",
        target_version="1.1.0",
        at=1.0,
        report_id=new_report_id(),
        node_id=None,
        details={"log": "é" * 60_000, "path": Path("/x")},
    )
    assert len(big["report"]["message"]) == MAX_MESSAGE_CHARS
    assert big["report"]["details"]["truncated"] is True
    sent = build_report(big, NODE, 12345)
    assert len(encode_report(sent)) <= MAX_REPORT_BYTES
    small = record(path=Path("/x"))
    assert small["report"]["details"]["path"] == "/x"  # JSON-safe from the start
    for bad in ({"version": "one"}, {"process": "Bad Name"}, {"target_version": "x"}):
        fields = {"process": "storagenode", "version": "1.0.0", "target_version": None} | bad
        with pytest.raises(ValueError):
            make_record(
                "hang", "m", at=1.0, report_id=new_report_id(), node_id=None, details={}, **fields
            )
    with pytest.raises(ValueError):
        make_record(
            "nonsense",  # type: ignore[arg-type]
            "m",
            process="storagenode",
            version="1.0.0",
            target_version=None,
            at=1.0,
            report_id=new_report_id(),
            node_id=None,
            details={},
        )


def test_write_durably_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    write_durably(target, b"one")
    write_durably(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.json"]


def test_outbox_holds_reports_in_memory_while_the_disk_refuses_writes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "reports", QueueLimits(max_count=10, max_bytes=1 << 20), held_max=3)
    assert box.put(record("update_succeeded", 0)) == "queued"
    # The queue directory turns into something that cannot hold files (as when a disk
    # fails or fills up): writes raise OSError.
    queue_dir = tmp_path / "reports" / "queue"
    shutil.move(queue_dir, tmp_path / "moved")
    queue_dir.write_bytes(b"not a directory")
    assert box.put(record("out_of_space", 1)) == "held"
    assert box.put(record("update_succeeded", 2)) == "held"
    assert box.put(record("hang", 3)) == "held"
    assert box.put(record("hang", 4)) == "held"  # held_max 3: the heartbeat went
    assert len(box) == 1 + 3 and box.dropped == 1
    # The disk works again: held reports go to the queue in order, the count with them.
    queue_dir.unlink()
    shutil.move(tmp_path / "moved", queue_dir)
    assert box.put(record("hang", 5)) == "queued"
    assert box.held == 0
    assert box.queue is not None
    assert ns(box.queue) == [0, 1, 3, 4, 5] and box.queue.dropped == 1


def test_outbox_sends_from_memory_when_the_queue_cannot_even_be_created(tmp_path: Path) -> None:
    (tmp_path / "reports").write_bytes(b"a file where the directory should be")
    box = Outbox(tmp_path / "reports")
    assert box.queue is None
    assert box.put(record("out_of_space", 0)) == "held"
    item = box.next()
    assert item is not None and item.entry is None
    assert item.record["report"]["kind"] == "out_of_space"
    box.delivered(item)
    assert len(box) == 0 and box.next() is None


def test_outbox_keeps_the_report_in_flight_and_carries_the_count(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "reports", QueueLimits(max_count=2, max_bytes=1 << 20))
    box.put(record("update_succeeded", 0))
    box.put(record("update_succeeded", 1))
    box.put(record("update_succeeded", 2))  # full: 0 goes
    item = box.next()  # 1 is on its way to the server; it carries the one drop
    assert item is not None and item.record["report"]["details"]["n"] == 1
    assert item.dropped == 1 and box.dropped == 0
    box.put(record("update_succeeded", 3))  # full again: 2 goes, not the one in flight
    assert box.queue is not None and ns(box.queue) == [1, 3]
    box.delivered(item)
    following = box.next()
    assert following is not None and following.record["report"]["details"]["n"] == 3
    assert following.dropped == 1  # the drop of 2, told by the next report
    box.release(following)  # the send failed; a retry later carries the same count
    again = box.next()
    assert again is not None and again.dropped == 1


def test_a_newer_heartbeat_replaces_queued_ones(tmp_path: Path) -> None:
    q = ReportQueue(tmp_path)
    q.put(record("heartbeat", 0))
    q.put(record("hang", 1))
    q.put(record("heartbeat", 2))
    other = record("heartbeat", 3)
    other["report"]["process"] = "nodekeeper"  # another process's heartbeat stays
    q.put(other)
    q.put(record("heartbeat", 4))
    assert ns(q) == [1, 3, 4] and q.dropped == 0  # replaced, not dropped: nothing lost
    assert sorted(p.name for p in (tmp_path / "queue").iterdir()) == [
        f"{i:020d}.json" for i in (2, 4, 5)
    ]
    # the one being sent stays even when a newer one arrives
    q.pin(q.entries()[-1])
    q.put(record("heartbeat", 5))
    assert ns(q) == [1, 3, 4, 5]


def test_heartbeats_left_by_an_older_keeper_collapse_at_start(tmp_path: Path) -> None:
    # A queue written before heartbeats replaced each other: three heartbeat files.
    q = ReportQueue(tmp_path)
    for n in range(3):
        write_durably(q._path(n + 1), encode_record(record("heartbeat", n)))
    assert ns(ReportQueue(tmp_path)) == [2]
    assert len(list((tmp_path / "queue").iterdir())) == 1
