"""Whole lines out of arbitrary chunks, and the bounded backlog (pure)."""

from __future__ import annotations

import random

import pytest

from nodekeeper.nodeshim.relay import Backlog, LineSplitter


def split_in_chunks(data: bytes, rng: random.Random) -> list[bytes]:
    chunks, i = [], 0
    while i < len(data):
        size = rng.randint(1, 50)
        chunks.append(data[i : i + size])
        i += size
    return chunks


@pytest.mark.parametrize("seed", range(20))
def test_any_chunking_gives_the_same_whole_lines(seed: int) -> None:
    rng = random.Random(seed)
    lines = [b"x" * rng.randint(0, 30) + b"\n" for _ in range(200)]
    data = b"".join(lines) + b"tail without newline"
    splitter = LineSplitter(max_line=1000)
    out = [line for chunk in split_in_chunks(data, rng) for line in splitter.feed(chunk)]
    assert out == lines  # only whole lines while the stream goes on
    assert splitter.end() == [b"tail without newline"]
    assert splitter.end() == []


def test_a_line_longer_than_the_limit_is_cut_into_pieces_of_the_limit() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed(b"abcdefghij") == [b"abcd", b"efgh"]
    assert splitter.feed(b"k\nxy\n") == [b"ijk\n", b"xy\n"]
    assert splitter.feed(b"1234\n") == [b"1234", b"\n"]


def test_backlog_sends_in_order_and_forgets_by_number() -> None:
    backlog = Backlog(max_bytes=1000)
    for n in range(5):
        backlog.add("stdout" if n % 2 else "stderr", b"line %d\n" % n)
    first = backlog.peek(3)
    assert [e.seq for e in first] == [0, 1, 2]
    assert [e.stream for e in first] == ["stderr", "stdout", "stderr"]
    backlog.remove_through(first[-1].seq)
    assert backlog.next_seq_to_send() == 3
    assert [e.line for e in backlog.peek(10)] == [b"line 3\n", b"line 4\n"]
    backlog.remove_through(4)
    assert len(backlog) == 0 and backlog.bytes == 0 and backlog.next_seq_to_send() == 5


def test_a_full_backlog_drops_the_oldest_and_counts_them() -> None:
    backlog = Backlog(max_bytes=100)
    for n in range(50):
        backlog.add("stdout", b"%09d\n" % n)  # 10 bytes each
    assert backlog.bytes <= 100 and len(backlog) == 10
    assert backlog.dropped == 40 and backlog.take_dropped() == 40 and backlog.dropped == 0
    assert backlog.peek(1)[0].line == b"%09d\n" % 40  # the newest lines are kept


def test_lines_dropped_between_peek_and_remove_are_not_removed_twice() -> None:
    backlog = Backlog(max_bytes=30)
    for n in range(3):
        backlog.add("stdout", b"%09d\n" % n)
    sent = backlog.peek(2)  # being sent: 0 and 1
    backlog.add("stdout", b"%09d\n" % 3)  # full: 0 is dropped meanwhile
    backlog.remove_through(sent[-1].seq)
    assert [e.seq for e in backlog.peek(10)] == [2, 3]
