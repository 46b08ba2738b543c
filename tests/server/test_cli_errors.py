"""Every control-plane command with garbage arguments, missing or unreadable files and a
down (or wrong) server: exit 1 or 2, one line on stderr saying what is wrong, never a
traceback. (Tests run as root here, where chmod 000 does not stop a read; a directory
where a file is expected is the unreadable file.)"""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from nodekeeper.cli import main
from tests.support import free_port

from .controlplane import ControlPlane
from .releases import release_zip


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-errors")
    release_zip(root / "good.zip", "2.0.0")
    (root / "notzip.zip").write_bytes(b"not a zip at all")
    (root / "adir").mkdir()
    (root / "afile").write_text("x")
    html = root / "html"
    (html / "v1" / "admin").mkdir(parents=True)
    (html / "v1" / "admin" / "status").write_text("<html>\n<body>hello</body>\n</html>\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep stderr for what the CLI says
            pass

    handler = functools.partial(Quiet, directory=str(html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    with ControlPlane(root / "cp") as cp:
        release_zip(root / "one.zip", "1.0.0")
        cp.cli("release", "publish", "storagenode", "1.0.0", "--artifact",
               f"linux_amd64={root / 'one.zip'}")  # fmt: skip
        yield {
            "zip": root / "good.zip",
            "notzip": root / "notzip.zip",
            "missing": root / "missing.zip",
            "dir": root / "adir",
            "file": root / "afile",
            "live": cp.url,
            "token": cp.token,
            "html": f"http://127.0.0.1:{httpd.server_address[1]}",
        }
    httpd.shutdown()
    httpd.server_close()


RUN = "server run --listen 127.0.0.1:{port} --data-dir {data}"
PUB = "release publish storagenode 2.0.0 --artifact"

CASES = [
    # (server to talk to, command line, exit code)
    ("live", "server run --listen nonsense", 2),
    ("live", "server run --listen 127.0.0.1:99999", 2),
    ("live", RUN + " --report-rate 0", 2),
    ("live", RUN + " --ramp-tick nan", 2),
    ("live", RUN + " --poll-interval -1", 2),
    ("live", RUN + " --db-wait inf", 2),
    ("live", RUN + " --db notaurl", 2),
    ("live", RUN + " --db mysql://u@127.0.0.1/x", 2),
    ("live", RUN + " --public-url version.example.net", 2),
    ("live", RUN + " --admin-token-file {missing}", 2),
    ("live", RUN + " --admin-token-file {dir}", 2),
    ("live", "server run --listen 127.0.0.1:{port} --data-dir {file}", 1),
    ("live", f"{PUB} linux_amd64={{missing}}", 2),
    ("live", f"{PUB} linux_amd64={{dir}}", 2),
    ("live", f"{PUB} linux_amd64={{notzip}}", 2),
    ("live", f"{PUB} linux_x86_64={{zip}}", 2),
    ("live", f"{PUB} {{zip}}", 2),
    ("live", "release publish storagenode one --artifact linux_amd64={zip}", 2),
    ("live", "release publish Storage.Node 2.0.0 --artifact linux_amd64={zip}", 2),
    ("live", "release publish storagenode 2.0.0", 2),
    ("down", f"{PUB} linux_amd64={{zip}}", 1),
    ("html", f"{PUB} linux_amd64={{zip}}", 1),
    ("live", "minimum set storagenode one", 1),
    ("live", "minimum set nosuchprocess 1.0.0", 1),
    ("down", "minimum set storagenode 1.0.0", 1),
    ("live", "rollout start storagenode 1.0.0 --rate nan", 2),
    ("live", "rollout start storagenode 1.0.0 --rate -5", 2),
    ("live", "rollout start storagenode 1.0.0 --rate many", 2),
    ("live", "rollout start storagenode 1.0.0 --seed zz", 1),
    ("live", "rollout start storagenode 9.9.9", 1),
    ("down", "rollout start storagenode 1.0.0", 1),
    ("live", "rollout set storagenode nan", 2),
    ("live", "rollout set storagenode inf", 2),
    ("live", "rollout set storagenode -1", 2),
    ("live", "rollout set storagenode 101", 2),
    ("live", "rollout set storagenode", 2),
    ("live", "rollout set storagenode 50", 1),  # no rollout yet
    ("live", "rollout pause nosuchprocess", 1),
    ("down", "rollout resume storagenode", 1),
    ("down", "rollout status", 1),
    ("html", "rollout status", 1),
    ("notaurl", "rollout status", 2),
    ("badtoken", "rollout status --json", 1),
    ("live", "rollout frobnicate", 2),
]


@pytest.mark.parametrize(("server", "command", "code"), CASES)
def test_cli_errors_are_one_line(places, tmp_path, monkeypatch, capsys, server, command, code):
    urls = {
        "live": places["live"],
        "down": f"http://127.0.0.1:{free_port()}",
        "html": places["html"],
        "notaurl": "notaurl",
        "badtoken": places["live"],
    }
    monkeypatch.setenv("NODEKEEPER_SERVER", urls[server])
    token = "wrong-token-wrong-token" if server == "badtoken" else places["token"]
    monkeypatch.setenv("NODEKEEPER_ADMIN_TOKEN", token)
    if command.startswith("server run"):
        # The server's token would come from the environment and hide --admin-token-file.
        monkeypatch.delenv("NODEKEEPER_ADMIN_TOKEN")

        def tripwire(*_args, **_kw):  # every case must fail before serving
            raise AssertionError("the server started; the case should have been refused")

        monkeypatch.setattr("nodekeeper.server.runner.run_server", tripwire)
    values = {k: v for k, v in places.items() if k not in ("live", "html", "token")}
    data = tmp_path / "cp"
    argv = command.format(port=free_port(), data=data, **values).split()
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        got = exc.code
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert got == code, out.err
    lines = out.err.strip().splitlines()
    if lines and lines[0].startswith("usage:"):
        assert lines[-1].startswith("nodekeeper ") and ": error: " in lines[-1], out.err
    else:
        assert len(lines) == 1 and lines[0].startswith("nodekeeper: error: "), out.err
    if "{data}" in command and code == 2:  # refused arguments create nothing
        assert not data.exists() or not any(data.iterdir())
