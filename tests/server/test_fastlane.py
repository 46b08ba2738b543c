"""The GET / fast lane answers exactly what the FastAPI route answers."""

import socket

import httpx

from .test_api import publish

SAME = ("etag", "cache-control", "content-type", "content-length")


def raw(server, payload: bytes, expect_close: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(payload)
        chunks = []
        s.settimeout(0.5 if not expect_close else 5)
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            assert not expect_close, "the server kept an HTTP/1.0 connection open"
        return b"".join(chunks)


def test_fast_lane_matches_the_route(server, tmp_path):
    publish(server, tmp_path, "1.0.0", platforms=("linux_amd64", "windows_amd64"))
    with httpx.Client(base_url=server.url) as c:
        fast = c.get("/")
        routed = c.get("/?via=asgi")  # a query string leaves the lane
        assert fast.content == routed.content
        for name in SAME:
            assert fast.headers[name] == routed.headers[name], name
        assert "date" in fast.headers
        etag = fast.headers["etag"]
        for path in ("/", "/?via=asgi"):
            r = c.get(path, headers={"If-None-Match": f'"x", {etag}'})
            assert r.status_code == 304 and r.content == b"", path
            assert r.headers["etag"] == etag
            h = c.head(path)
            assert h.status_code == 200 and h.content == b"" and h.headers["etag"] == etag
            assert h.headers["content-length"] == fast.headers["content-length"]


def test_fast_lane_http10_closes_and_pipelining_works(server, tmp_path):
    publish(server, tmp_path, "1.0.0")
    body = httpx.get(server.url + "/").content
    reply = raw(server, b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", expect_close=True)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in reply.lower() and reply.endswith(body)
    # two requests in one write, the second one not for the lane
    two = raw(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert two.count(b"HTTP/1.1 200 OK") == 2
    assert body in two and b'"ok":true' in two
    # a malformed request still gets uvicorn's 400
    assert raw(server, b"GARBAGE\r\n\r\n", expect_close=True).startswith(b"HTTP/1.1 400")
