import functools
import http.server
import threading

import pytest

from .controlplane import ControlPlane


@pytest.fixture
def server(tmp_path):
    with ControlPlane(tmp_path / "cp") as cp:
        yield cp


@pytest.fixture
def static_host(tmp_path):
    """A plain static file server on loopback, standing in for a CDN."""
    root = tmp_path / "cdn"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.root = root
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
