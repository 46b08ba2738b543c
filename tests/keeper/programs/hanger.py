"""Answers its pulse for HEALTHY seconds, then accepts connections but never answers
(a deadlocked node: the process lives, the endpoint is dead). Usage: hanger.py PORT HEALTHY
"""

from __future__ import annotations

import socket
import sys
import time


def main() -> None:
    port, healthy = int(sys.argv[1]), float(sys.argv[2])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    began = time.monotonic()
    held = []
    while True:
        conn, _ = server.accept()
        if time.monotonic() - began < healthy:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            conn.close()
        else:
            held.append(conn)  # never answered


if __name__ == "__main__":
    main()
