"""A queued report on disk, and the signed `Report` it becomes when it is sent.

A record is what the keeper knows when something happens; the node ID is filled in at
queue time when the identity can be read, else at send time (the node may not be set up
yet), and the signature is always made at send time. A record that was bound to a node ID
keeps it: if the identity is replaced meanwhile, the report still speaks for the node it
happened on, and the server refuses it (401) rather than crediting the new node.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from nodekeeper.version.reports import (
    MAX_REPORT_BYTES,
    NOT_FAILURES,
    Report,
    ReportKind,
    encode_report,
)

RECORD_FORMAT = 1
MAX_MESSAGE_CHARS = 4000  # Report.message's limit
# Room kept free under the server's size limit for what is added at send time (node ID,
# dropped-report count) and for the JSON around it.
SEND_TIME_MARGIN = 512
# A valid-looking node ID of the usual length, used only to measure and validate a record
# that is queued before the identity can be read.
_PLACEHOLDER_NODE_ID = "1" * 50
DROPPED_DETAIL = "dropped_reports"


class RecordError(ValueError):
    """The bytes are not a record this keeper can send."""


def make_record(
    kind: ReportKind,
    message: str,
    *,
    process: str,
    version: str,
    target_version: str | None,
    at: float,
    report_id: str,
    node_id: str | None,
    details: dict[str, Any],
) -> dict[str, Any]:
    """A record that will become a valid report under the server's size limit.

    Raises ValueError for fields the server would refuse (unknown kind, a version that is
    not SemVer): those are the caller's mistakes and cannot get better by waiting. Too
    long a message or too big details are cut to fit instead: the event still counts.
    """
    fields: dict[str, Any] = {
        "report_id": report_id,
        "process": process,
        "version": version,
        "target_version": target_version,
        "kind": kind,
        "message": message[:MAX_MESSAGE_CHARS],
        "at": at,
        # Through JSON once: what the record holds is exactly what will be sent, and
        # values JSON cannot carry (paths, exceptions) become their text now.
        "details": json.loads(json.dumps(details, default=str)),
    }
    record = {"format": RECORD_FORMAT, "node_id": node_id, "claimed_drops": 0, "report": fields}
    try:
        report = build_report(record, node_id or _PLACEHOLDER_NODE_ID, 0)
    except RecordError as exc:
        raise ValueError(str(exc)) from None
    limit = MAX_REPORT_BYTES - SEND_TIME_MARGIN
    if len(encode_report(report)) > limit:
        text = json.dumps(fields["details"], sort_keys=True)
        fields["details"] = {"truncated": True, "details_text": text[: limit // 2]}
    return record


def encode_record(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def decode_record(data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"not JSON: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("report"), dict):
        raise RecordError("not a queued report")
    if record.get("format") != RECORD_FORMAT:
        raise RecordError(f"record format {record.get('format')!r}, this keeper reads 1")
    return record


def is_failure(record: dict[str, Any]) -> bool:
    return record["report"].get("kind") not in NOT_FAILURES


def supersede_key(record: dict[str, Any]) -> str | None:
    """Reports of which only the newest matters share a key: a heartbeat says which
    version a process runs now, so a queued older one says nothing more. After a long
    outage, failures then do not wait behind hours of heartbeats."""
    report = record["report"]
    if report.get("kind") == "heartbeat":
        return f"heartbeat:{report.get('process')}"
    return None


def build_report(record: dict[str, Any], node_id: str, dropped: int) -> Report:
    """The report to sign; ``dropped`` (reports the queue had to drop before this one) is
    carried in its details, as ``dropped_reports``, when non-zero."""
    fields = dict(record["report"])
    details = dict(fields.get("details") or {})
    if dropped:
        details[DROPPED_DETAIL] = dropped
    fields["details"] = details
    try:
        return Report(node_id=record.get("node_id") or node_id, **fields)
    except (TypeError, ValidationError) as exc:
        raise RecordError(f"not a valid report: {exc}") from None
