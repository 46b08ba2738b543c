"""The MSI: its size, a silent install up to the node's first pulse, and the service's
memory once idle, under Wine, for this tree and a baseline build, in the same run.

    .venv/bin/python bench/msi_install.py [--baseline REV] [--idle-seconds 20]

For each build (the baseline's tree from `git archive REV`, then this one):
1. `installer/build.py` from that tree: the MSI's size and its file count;
2. a fresh Wine prefix (scripts/wine-prepare.sh), then
   `msiexec /i ... /qn STORAGE_DIR=... ALLOCATION=1GB WALLET=... EMAIL=... ADDRESS=...`,
   timed to msiexec's exit and to the node's first answered /pulse (127.0.0.1:7778);
3. after --idle-seconds, the private bytes of the keeper and of the service host (the
   launcher), read inside Wine as the Windows platform reads them.
The baseline defaults to the first commit whose MSI sets the node up from properties.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WALLET = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
PULSE = "http://127.0.0.1:7778/pulse"
DEFAULT_BASELINE = "a894128"  # the first MSI that sets the node up from properties


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_msi(tree: Path, out: Path) -> Path:
    done = subprocess.run(
        [sys.executable, str(tree / "installer" / "build.py"), "--out", str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip().splitlines()[-1])


def wine_env() -> dict[str, str]:
    exports = subprocess.run(
        [str(ROOT / "scripts" / "wine-prepare.sh")], capture_output=True, text=True, check=True
    ).stdout
    env = dict(os.environ, WINEDEBUG="-all", WINEDLLOVERRIDES="winemenubuilder.exe=d")
    for line in exports.splitlines():
        words = shlex.split(line)
        if words[:1] == ["export"]:
            env.update(word.split("=", 1) for word in words[1:] if "=" in word)
    env.pop("DISPLAY", None)
    subprocess.run([str(ROOT / "scripts" / "wine-start.sh")], env=env, check=True)
    return env


def pulse() -> bool:
    try:
        with urllib.request.urlopen(PULSE, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def private_mb(env: dict[str, str], keeper: int) -> tuple[float | None, float | None]:
    """The keeper's and the service host's private bytes (MiB), read inside Wine."""
    runtime = Path(env["NODEKEEPER_WINE_RUNTIME"])
    code = (
        "import json, win32service\n"
        "from nodekeeper.platform.windows_process import private_bytes_of\n"
        "scm = win32service.OpenSCManager(None, None, 1)\n"
        "h = win32service.OpenService(scm, 'nodekeeper', 4)\n"
        "host = win32service.QueryServiceStatusEx(h)['ProcessId']\n"
        f"print('RESULT ' + json.dumps([private_bytes_of({keeper}), private_bytes_of(host)]))"
    )
    out = subprocess.run(
        ["wine", str(runtime / "python.exe"), "-c", code],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    found = re.search(r"RESULT (\[.*\])", out)
    values = json.loads(found.group(1)) if found else [None, None]
    keeper_mb, host_mb = (round(v / 2**20, 1) if v else None for v in values)
    return keeper_mb, host_mb


def measure(msi: Path, idle_seconds: float) -> dict[str, object]:
    env = wine_env()
    prefix = Path(env["WINEPREFIX"])
    try:
        started = time.monotonic()
        subprocess.run(
            ["wine", "msiexec", "/i", "Z:" + str(msi).replace("/", "\\"), "/qn",
             "STORAGE_DIR=C:\\pieces", "ALLOCATION=1GB", f"WALLET={WALLET}",
             "EMAIL=op@example.com", f"ADDRESS=node.example.com:{free_port()}"],
            env=env, stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=600,
        )  # fmt: skip
        installed = time.monotonic() - started
        deadline = time.monotonic() + 180
        while not pulse():
            if time.monotonic() > deadline:
                raise RuntimeError("no pulse within 180 s of the install")
            time.sleep(0.05)
        first_pulse = time.monotonic() - started
        time.sleep(idle_seconds)
        log = prefix / "drive_c" / "ProgramData" / "nodekeeper" / "logs" / "launcher.log"
        keeper = int(re.findall(r"started keeper .*? \(pid (\d+)\)", log.read_text())[-1])
        keeper_mb, host_mb = private_mb(env, keeper)
        subprocess.run(["wine", "sc", "stop", "nodekeeper"], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, check=False)  # fmt: skip
        return {
            "install_s": round(installed, 1),
            "first_pulse_s": round(first_pulse, 1),
            "keeper_mb": keeper_mb,
            "host_mb": host_mb,
        }
    finally:
        subprocess.run([str(ROOT / "scripts" / "wine-cleanup.sh")], env=env, check=False,
                       capture_output=True)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="nk-msi-bench-") as work:
        base = Path(work) / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "archive", args.baseline], cwd=ROOT,
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        head = ["git", "rev-parse", "--short", "HEAD"]
        current = subprocess.run(head, cwd=ROOT, capture_output=True, text=True).stdout.strip()
        for label, tree in ((f"baseline {args.baseline}", base), (f"this tree ({current})", ROOT)):
            msi = build_msi(tree, Path(work) / label.split()[0])
            files = subprocess.run(["msiinfo", "export", str(msi), "File"], capture_output=True,
                                   text=True, check=True).stdout.count("\n") - 3  # fmt: skip
            figures = measure(msi, args.idle_seconds)
            rows.append((label, round(msi.stat().st_size / 2**20, 1), files, figures))
            print(f"{label}: {rows[-1][1]} MiB, {files} files, {figures}", flush=True)
    print()
    print("| build | MSI | files | msiexec /qn | to first pulse | keeper idle | service host |")
    print("|---|---|---|---|---|---|---|")
    for label, size, files, f in rows:
        print(f"| {label} | {size} MiB | {files} | {f['install_s']} s | {f['first_pulse_s']} s | "
              f"{f['keeper_mb']} MiB | {f['host_mb']} MiB |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
