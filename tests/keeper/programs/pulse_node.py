"""A stand-in node: serves GET /pulse and POST /shutdown on loopback, stops on SIGTERM.

Usage: pulse_node.py PORT [--token-file F] [--exit-after S] [--code C] [--events FILE]
Appends "start <pid> <time>" and "stop <pid> <how> <time>" lines to --events.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.time()


def note(path: str | None, text: str) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(f"{text} {time.time():.6f}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--token-file")
    parser.add_argument("--exit-after", type=float)
    parser.add_argument("--code", type=int, default=1)
    parser.add_argument("--events")
    args = parser.parse_args()
    note(args.events, f"start {os.getpid()}")
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/pulse":
                self.send_error(404)
                return
            body = json.dumps(
                {
                    "version": "1.2.3",
                    "node_id": "test",
                    "uptime_seconds": time.time() - STARTED,
                    "schema_version": 1,
                    "used_bytes": 0,
                    "allocated_bytes": 1,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            token = None
            if args.token_file:
                with open(args.token_file) as fh:
                    token = fh.read().strip()
            if self.path != "/shutdown" or self.headers.get("Authorization") != f"Bearer {token}":
                self.send_error(403)
                return
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            note(args.events, f"stop {os.getpid()} endpoint")
            stop.set()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.allow_reuse_address = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def on_term(signum: int, frame: object) -> None:
        note(args.events, f"stop {os.getpid()} sigterm")
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    print(f"listening on {args.port}", flush=True)
    print("an error line for stderr", file=sys.stderr, flush=True)
    if stop.wait(args.exit_after):
        server.shutdown()
        sys.exit(0)
    note(args.events, f"crash {os.getpid()}")
    os._exit(args.code)


if __name__ == "__main__":
    main()
