import json
import logging

import pytest

from nodekeeper.logs import level_of_line

D, INF, W, E, C = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("DEBUG", D),
        ("INFO", INF),
        ("WARNING", W),
        ("WARN", W),
        ("ERROR", E),
        ("error", E),
        ("FATAL", C),
        ("PANIC", C),
        ("DPANIC", C),
        ("CRITICAL", C),
    ],
)
@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_reference_node_json_lines(level, expected, stream):
    line = json.dumps({"ts": "2026-01-01T00:00:00Z", "level": level, "msg": "x"})
    assert level_of_line(line, stream) == expected


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("2024-01-01T00:00:00Z\tERROR\tpiecestore\tupload failed\t{}", E),
        ("2024-01-01T00:00:00Z\tINFO\tpiecestore\tuploaded", INF),
        ("2024-01-01T00:00:00.123+0200\tWARN\tcontact:service\tping failed", W),
        ("2024-01-01T00:00:00Z\tDEBUG\tx\ty", D),
        ("2024-01-01T00:00:00Z\tFATAL\tUnrecoverable error\t{}", C),
        ("2024-01-01 00:00:00 ERROR something broke", E),
        ('{"L": "ERROR", "M": "zap development json"}', E),
    ],
)
def test_storj_text_lines(line, expected):
    assert level_of_line(line, "stdout") == expected
    assert level_of_line(line, "stderr") == expected


@pytest.mark.parametrize(
    "line",
    [
        "plain text",
        "",
        "   ",
        "{not json",
        '{"level": 5}',
        '{"level": "LOUD"}',
        "[1, 2]",
        '["level", "ERROR"]',
        "2024 is a year with ERROR in the fourth word",
        "12 apples",
        "error: lowercase word but no timestamp before it",
    ],
)
def test_unknown_text_depends_on_the_stream(line):
    assert level_of_line(line, "stdout") == INF
    assert level_of_line(line, "stderr") == W


def test_default_stream_is_stdout():
    assert level_of_line("hello") == INF


@pytest.mark.parametrize(
    "line", ["panic: runtime error: index out of range", "fatal error: out of memory"]
)
def test_go_crashes_on_stderr_are_critical(line):
    assert level_of_line(line, "stderr") == C
    assert level_of_line(line, "stdout") == INF
