"""The public address: ``PUT``, ``GET`` and ``DELETE /pieces/{id}``.

Uploads must send ``Content-Length`` (the space is reserved before the body is read, so a
full node refuses at once) and ``X-Content-SHA256`` (hex); the node answers 201 only once
the piece is durable. Errors are JSON ``{"error": "..."}`` with a status that says why:
400 bad request or hash mismatch, 404 unknown piece, 409 piece exists, 411 no length,
503 stopping, 507 allocated space (or disk) full.
"""

from __future__ import annotations

import errno
import re
import shutil

from storagenode.httpbase import JsonHandler
from storagenode.log import get_logger
from storagenode.store import StoreError

CHUNK = 256 * 1024
# A refused upload's body is read and dropped up to this size, so that the client sees
# our answer instead of a connection reset; beyond it we just close.
DRAIN_LIMIT = 8 * 1024 * 1024
HASH_HEADER = "X-Content-SHA256"
_PATH = re.compile(r"^/pieces/([^/?#]+)$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


class PublicHandler(JsonHandler):
    def _piece_id(self) -> str | None:
        match = _PATH.match(self.path)
        if not match:
            self.send_error_json(404, "no such endpoint: use /pieces/{id}")
            return None
        if self.state.stop.is_set():
            self.send_error_json(503, "node is shutting down")
            return None
        return match.group(1)

    def do_PUT(self) -> None:
        with self.state.inflight.track():
            self._put()

    def do_GET(self) -> None:
        with self.state.inflight.track():
            self._get()

    def do_DELETE(self) -> None:
        with self.state.inflight.track():
            piece_id = self._piece_id()
            if piece_id is None:
                return
            try:
                self.state.store.delete(piece_id)
            except StoreError as exc:
                self.send_error_json(exc.status, str(exc))
                return
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

    def _refuse_upload(self, status: int, message: str, length: int | None) -> None:
        if length is not None and length <= DRAIN_LIMIT:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
        self.send_error_json(status, message)

    def _read_chunk(self, n: int) -> bytes:
        """Up to n body bytes; b"" when the client hung up or went silent (``timeout``)."""
        try:
            return self.rfile.read(n)
        except (TimeoutError, ConnectionError):
            return b""

    def _put(self) -> None:
        try:
            length: int | None = int(self.headers.get("Content-Length", ""))
        except ValueError:
            length = None
        if length is not None and length < 0:
            length = None
        piece_id = self._piece_id()
        if piece_id is None:
            return
        if length is None:
            self.send_error_json(411, "send Content-Length: space is reserved before upload")
            return
        expected = self.headers.get(HASH_HEADER, "")
        if not _HEX64.match(expected):
            message = f"send the body's sha256 as 64 hex digits in {HASH_HEADER}"
            self._refuse_upload(400, message, length)
            return
        store = self.state.store
        body_unread = True
        try:
            with store.upload(piece_id, length) as upload:
                body_unread = False
                remaining = length
                while remaining > 0:
                    chunk = self._read_chunk(min(CHUNK, remaining))
                    if not chunk:
                        # Client went away: nothing was acknowledged, the temp file goes.
                        get_logger().warning(
                            "upload interrupted by client",
                            extra={"fields": {"piece": piece_id, "missing": remaining}},
                        )
                        self.close_connection = True
                        return
                    upload.write(chunk)
                    remaining -= len(chunk)
                info = upload.commit(expected)
        except StoreError as exc:
            self._refuse_upload(exc.status, str(exc), length if body_unread else None)
            return
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                get_logger().error("disk full", extra={"fields": {"piece": piece_id}})
                self.send_error_json(507, "the disk is full")
                return
            get_logger().error(
                "cannot store piece", exc_info=True, extra={"fields": {"piece": piece_id}}
            )
            self.send_error_json(500, f"cannot store the piece: {exc.strerror or exc}")
            return
        get_logger().debug("piece stored", extra={"fields": {"piece": piece_id, "size": info.size}})
        self.send_json(201, {"id": info.piece_id, "size": info.size, "sha256": info.sha256})

    def _get(self) -> None:
        piece_id = self._piece_id()
        if piece_id is None:
            return
        try:
            with self.state.store.read(piece_id) as (info, f):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(info.size))
                self.send_header(HASH_HEADER, info.sha256)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                shutil.copyfileobj(f, self.wfile, CHUNK)
        except StoreError as exc:
            self.send_error_json(exc.status, str(exc))
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client hung up or stopped reading
