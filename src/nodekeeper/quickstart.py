"""`nodekeeper quickstart`: a local control plane with an example release, on defaults.

It starts the control plane on loopback over an SQLite file in the user's data dir,
publishes the reference storage node through the admin API the way an operator would,
and prints the announcement URL and the commands that drive a rollout. Ctrl-C stops it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from nodekeeper.cli import EXIT_USAGE, CommandError
from nodekeeper.server.auth import load_admin_token
from nodekeeper.server.client import AdminClient, AdminClientError
from nodekeeper.server.commands import parse_listen
from nodekeeper.server.runner import build_server
from nodekeeper.server.settings import ServerSettings
from nodekeeper.version.platforms import this_platform

EXAMPLE_VERSIONS = ("1.0.0", "1.1.0")


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("nodekeeper", appauthor=False)) / "quickstart"


def build_examples(data_dir: Path) -> dict[str, Path]:
    from storagenode.release import build_artifact

    return {v: build_artifact(v, data_dir / "releases") for v in EXAMPLE_VERSIONS}


def run_quickstart(data_dir: Path | None, listen: str) -> int:
    data_dir = data_dir or default_data_dir()
    host, port = parse_listen(listen)
    token, _ = load_admin_token(None, data_dir / "control-plane")
    url = f"http://{host}:{port}"
    settings = ServerSettings(
        db_url=f"sqlite:///{data_dir / 'control-plane' / 'control-plane.db'}",
        data_dir=data_dir / "control-plane",
        public_url=url,
        admin_token=token,
    )
    server = build_server(settings, host, port)
    thread = threading.Thread(target=server.run, name="control-plane", daemon=True)
    thread.start()
    # uvicorn only handles signals on the main thread; SIGTERM ends us like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise CommandError(
                f"the control plane could not listen on {listen} (is the port in use? "
                "pass --listen HOST:PORT)",
                EXIT_USAGE,
            )
        time.sleep(0.05)
    try:
        artifacts = build_examples(data_dir)
        first, second = EXAMPLE_VERSIONS
        client = AdminClient(url, token.value)
        try:
            published = {
                r["process"]: r["versions"] for r in client.request("GET", "/v1/admin/status")
            }
            if first not in published.get("storagenode", []):
                client.publish("storagenode", first, _all_platforms(artifacts[first]))
        finally:
            client.close()
        _print_instructions(url, token.source, artifacts[second])
        while thread.is_alive():
            thread.join(0.5)
    except AdminClientError as exc:
        raise CommandError(f"quickstart could not publish the example release: {exc}") from None
    except KeyboardInterrupt:
        print("\nstopping the control plane")
    finally:
        server.should_exit = True
        thread.join(15)
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _all_platforms(path: Path) -> dict[str, str]:
    # The reference node is pure Python: one zip runs on every platform's runtime.
    platforms = {this_platform(), "linux_amd64", "windows_amd64"}
    return {p: str(path) for p in sorted(platforms)}


def _print_instructions(url: str, token_file: str, next_release: Path) -> None:
    artifact_args = " ".join(f"--artifact {p}={next_release}" for p in _all_platforms(next_release))
    print(
        f"""
nodekeeper control plane is up.

  announcement (what nodes poll):  {url}/
  API docs:                         {url}/docs
  admin token:                      {token_file}

Drive a rollout from another terminal:

  export NODEKEEPER_SERVER={url}
  export NODEKEEPER_ADMIN_TOKEN=$(cat {token_file})
  nodekeeper rollout status
  nodekeeper release publish storagenode {EXAMPLE_VERSIONS[1]} {artifact_args}
  nodekeeper rollout start storagenode {EXAMPLE_VERSIONS[1]} --rate 200
  nodekeeper rollout status
  curl -s {url}/ | python3 -m json.tool

Ctrl-C stops it (state is kept in {os.path.dirname(token_file)}).
""",
        flush=True,
    )
