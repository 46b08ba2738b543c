"""How long the node is down while the keeper updates itself, measured with the reference
storage node: the old keeper stops the node on its way out, the new keeper starts it."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w

from nodekeeper.launcher.decide import State
from tests.keeper.conftest import fast_settings, free_port
from tests.nodes import NodeProcess, setup_node
from tests.selfupdate.conftest import PROBATION, LauncherProcess, Site, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def get(port: int, path: str) -> tuple[int, bytes] | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def pulse(port: int) -> dict | None:
    answer = get(port, "/pulse")
    return json.loads(answer[1]) if answer is not None and answer[0] == 200 else None


class ServiceWatch:
    """Samples the node's public address every 10 ms in a thread (a GET of a piece that
    does not exist: 404 means the node serves). The longest gap between two answers is
    the downtime a satellite sees: the public listener closes first when the node stops
    and opens before its pulse does when it starts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = get(self.port, "/pieces/downtime-probe")
            if answer is not None and answer[0] == 404:
                self.answered.append(time.monotonic())
            time.sleep(0.01)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(b - a for a, b in zip(self.answered, self.answered[1:], strict=False))


def test_self_update_downtime_of_the_node(
    tmp_path: Path, launchers: Callable[..., LauncherProcess]
) -> None:
    node = setup_node(tmp_path / "node", allocated="50 MB")
    # The node alone: graceful stop and cold start, to compare against.
    alone = NodeProcess(node)
    began = time.monotonic()
    with alone:
        alone.wait_ready()
        cold_start = time.monotonic() - began
        began = time.monotonic()
        alone.shutdown()
        alone.wait()
        own_stop = time.monotonic() - began

    control = f"http://127.0.0.1:{node.control_port}"
    settings = fast_settings(
        tmp_path,
        ["storagenode", "run", "--config-dir", "{config_dir}"],
        node={"config_dir": str(node.config_dir)},
        probe={"kind": "http", "url": f"{control}/pulse", "start_grace_seconds": 20.0},
        stop={"timeout_seconds": 10.0, "shutdown_url": f"{control}/shutdown"},
    )
    config = tmp_path / "keeper.toml"
    config.write_bytes(tomli_w.dumps(settings).encode())
    site = Site(
        tmp_path,
        config,
        Path(settings["data_dir"]),
        int(settings["status"]["listen"].rsplit(":", 1)[1]),
        free_port(),
        tmp_path / "unused",
    )
    site.release("good", "1.0.0")
    new = site.release("good", "1.1.0")
    site.set_state(State(current="1.0.0"))
    launcher = launchers(site)
    launcher.wait_running("1.0.0")
    wait_for(lambda: pulse(node.control_port), 20, "the node's first pulse")

    node_id = pulse(node.control_port)["node_id"]
    watch = ServiceWatch(node.port)
    time.sleep(0.3)
    assert launcher.hand_over(new, "1.1.0") == {"ok": True}
    wait_for(lambda: site.state().current == "1.1.0", 3 * PROBATION + 10, "the commit")
    time.sleep(0.3)
    downtime = watch.stop()

    assert pulse(node.control_port)["node_id"] == node_id  # the same node came back
    baseline = own_stop + cold_start
    print(
        f"\nself-update downtime {downtime:.2f} s; the node's own stop {own_stop:.2f} s + "
        f"cold start {cold_start:.2f} s = {baseline:.2f} s; ratio {downtime / baseline:.1f}"
    )
    # A restart happened (a gap far above the 10 ms sampling) and stayed bounded: keeper
    # exit + keeper start + node start + first probe, with slack for a loaded machine.
    assert 0.1 < downtime < 20
