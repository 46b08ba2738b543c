import os

import pytest

from nodekeeper.version.rollout import (
    MAX_CURSOR,
    ZERO_CURSOR,
    InvalidPercentageError,
    cursor_to_percentage,
    is_rollout_candidate,
    percentage_to_cursor,
)

# Storj's published cursor vectors.
STORJ_VECTORS = {
    6: "0f5c28f5c28f5c28f5c28f5c28f5c28f5c28f5c28f5c28f5c28f5c28f5c1f960",
    12: "1eb851eb851eb851eb851eb851eb851eb851eb851eb851eb851eb851eb83f2c0",
    25: "3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffd8f10",
    50: "7ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffb1e20",
}


@pytest.mark.parametrize(("pct", "cursor_hex"), sorted(STORJ_VECTORS.items()))
def test_cursor_matches_storj_vectors(pct, cursor_hex):
    assert percentage_to_cursor(pct).hex() == cursor_hex


def test_cursor_extremes():
    assert percentage_to_cursor(0) == ZERO_CURSOR == bytes(32)
    assert percentage_to_cursor(100) == MAX_CURSOR == b"\xff" * 32


def test_small_percentages_are_right_aligned():
    # Storj copies big.Int bytes into the cursor left-aligned, which makes tiny
    # percentages huge; ours keeps the value.
    cursor = percentage_to_cursor(0.0001)
    assert len(cursor) == 32
    assert cursor[0] == 0
    assert int.from_bytes(cursor, "big") == (2**256 - 1) // 1_000_000
    assert cursor < percentage_to_cursor(0.38) < percentage_to_cursor(6)


def test_cursor_is_monotonic():
    cursors = [percentage_to_cursor(p / 10) for p in range(0, 1001)]
    assert cursors == sorted(cursors)


@pytest.mark.parametrize("bad", [-0.1, 100.01, float("nan"), float("inf"), "50", None, True])
def test_bad_percentages_are_refused(bad):
    with pytest.raises(InvalidPercentageError):
        percentage_to_cursor(bad)


def test_cursor_to_percentage_round_trips():
    for pct in (0, 0.5, 6, 33.3333, 99.9999, 100):
        assert cursor_to_percentage(percentage_to_cursor(pct)) == pytest.approx(pct, abs=1e-4)


def test_candidate_edges():
    node = os.urandom(32)
    seed = os.urandom(32)
    assert is_rollout_candidate(node, seed, MAX_CURSOR)
    assert not is_rollout_candidate(node, seed, ZERO_CURSOR)


def test_forty_percent_of_random_nodes_are_candidates():
    seed = os.urandom(32)
    cursor = percentage_to_cursor(40)
    hits = sum(is_rollout_candidate(os.urandom(32), seed, cursor) for _ in range(10_000))
    assert 3850 <= hits <= 4150, hits


def test_same_node_same_answer_different_seed_reshuffles():
    cursor = percentage_to_cursor(50)
    nodes = [os.urandom(32) for _ in range(2000)]
    seed_a, seed_b = os.urandom(32), os.urandom(32)
    a = [is_rollout_candidate(n, seed_a, cursor) for n in nodes]
    assert a == [is_rollout_candidate(n, seed_a, cursor) for n in nodes]
    b = [is_rollout_candidate(n, seed_b, cursor) for n in nodes]
    assert a != b
