"""What signed releases cost an update: the fetch of a 64 MiB artifact without and with TUF.

    .venv/bin/python bench/tuf_verify.py [--size-mib 64] [--rounds 21] [--line-mbit 100]
                                         [--line-rounds 3]

nginx (one worker, sendfile; as in update_download.py) serves one random artifact and a
TUF repository's metadata (tests/updater/tuf_repository.py: real ed25519 keys, consistent
snapshots) from the same directory on loopback. Each round times, on the same file from
the same server, the keeper's one fetch path ``updater.fetch.fetch_verified``:

- without TUF: download (sha256 streamed) and verify against the announcement;
- with TUF: the same, after a metadata refresh (root lookup, timestamp, snapshot,
  targets, signature checks) and the comparison of the signed entry with the
  announcement; the download is bounded by and compared with the signed values, by the
  streamed sha256 (the 64 MiB are not read twice).

Before every TUF round the repository publishes a new targets version (as a new release
does), so each refresh downloads timestamp, snapshot and targets: the worst case of a
check, not a cache hit. The keeper's metadata cache persists across rounds, as it does
on a node. Rounds alternate, the median is reported. Target: overhead <= 5 %.

Three times: the fetch on loopback at full speed (about 250 MiB/s here: the worst case
for the ratio, and noisy, since a 64 MiB fetch takes a quarter of a second), then
through a home line's speed (``--line-mbit``, nginx's limit_rate; 100 Mbit/s by
default), where the download is what an operator waits for; and the update's own work
at full speed: the fetch plus ``install_checked`` (unpack and preflight) of a real node
release padded to the same size (the switch and the probation are waits the operator
configures, left out).

Then the memory side: a fresh Python process imports what a keeper with ``[update]``
imports (the update settings, the machine, the fetch path) and reports its RSS, whether
tuf was loaded, and its RSS after one signed check (tuf, securesystemslib and the
refresh). A keeper without ``trusted_root`` never pays the second figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.update_download import NGINX_CONF, make_file, need, wait_port  # noqa: E402

# The metadata as the control plane serves it (uvicorn: TCP_NODELAY, header and body in
# one send). nginx's sendfile sends them apart, and Nagle then holds a small body back
# until the client's delayed ACK (40 ms per file): a cost of this test server, not of TUF.
# /line/ serves the same files at a home line's speed (limit_rate, bytes per second).
TUF_NGINX_CONF = NGINX_CONF.replace(
    "root {dir}/www; }}",
    "root {dir}/www; location /tuf/ {{ sendfile off; }} "
    "location /line/ {{ alias {dir}/www/; limit_rate {line_rate}; }} }}",
)
from tests.support import free_port  # noqa: E402
from tests.updater.httpserver import FileServer  # noqa: E402
from tests.updater.tuf_repository import Repository  # noqa: E402

from nodekeeper.updater.download import DownloadSettings, make_client, part_path  # noqa: E402
from nodekeeper.updater.fetch import fetch_verified  # noqa: E402
from nodekeeper.updater.install import install_checked  # noqa: E402
from nodekeeper.updater.trust import SignedRelease, TrustSettings  # noqa: E402
from nodekeeper.version.schema import Artifact  # noqa: E402
from storagenode.release import build_artifact  # noqa: E402

MiB = 1024 * 1024
PROCESS, VERSION, PLATFORM = "storagenode", "1.2.3", "linux_amd64"
NODE_VERSION = "1.2.4"  # a real node release (tests/artifacts.py), padded to the size


def dump(repo: Repository, www: Path) -> None:
    """The repository's served files onto nginx's disk (the exact bytes)."""
    for path, data in repo.files.files.items():
        target = www / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


def fetch_once(
    artifact: Artifact, downloads: Path, signed: SignedRelease | None
) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one fetch_verified."""
    part = part_path(downloads, PROCESS, VERSION, PLATFORM)
    started, cpu = time.perf_counter(), time.process_time()
    with make_client(DownloadSettings()) as client:
        final = fetch_verified(client, artifact, part, free_space_margin=0, signed=signed)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    final.unlink()
    return elapsed, cpu


def update_once(
    artifact: Artifact, downloads: Path, versions: Path, signed: SignedRelease | None
) -> tuple[float, float]:
    """(wall, CPU) seconds of the update's own work: fetch, unpack, preflight."""
    part = part_path(downloads, PROCESS, NODE_VERSION, PLATFORM)
    started, cpu = time.perf_counter(), time.process_time()
    with make_client(DownloadSettings()) as client:
        final = fetch_verified(client, artifact, part, free_space_margin=0, signed=signed)
    installed = install_checked(final, versions, PROCESS, NODE_VERSION, free_space_margin=0)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    shutil.rmtree(installed.path)
    final.unlink()
    return elapsed, cpu


def refresh_once(signed: SignedRelease) -> float:
    from nodekeeper.updater.signed import signed_target

    with make_client(DownloadSettings()) as client:  # its TLS context is not TUF's cost
        started = time.perf_counter()
        found = signed_target(client, signed)
        elapsed = time.perf_counter() - started
    assert found is not None
    return elapsed


MEMORY_PROBE = textwrap.dedent(
    """
    import json, sys, psutil
    from pathlib import Path
    import nodekeeper.keeper.wiring, nodekeeper.keeper.update_settings
    import nodekeeper.updater.machine, nodekeeper.updater.fetch, nodekeeper.updater.cycle
    import nodekeeper.keeper.reports
    from nodekeeper.updater.download import make_client
    from nodekeeper.updater.trust import SignedRelease, TrustSettings
    args = json.loads(sys.argv[1])
    trust = TrustSettings(Path(args["root"]), args["url"], Path(args["cache"]))
    proc = psutil.Process()
    with make_client() as client:  # a check's client (TLS roots loaded) either way
        client.get(args["url"] + "timestamp.json")
        before = proc.memory_full_info()
        loaded = any(m == "tuf" or m.startswith(("tuf.", "securesystemslib")) for m in sys.modules)
        from nodekeeper.updater.signed import signed_target
        assert signed_target(client, SignedRelease(trust, *args["release"])) is not None
        after = proc.memory_full_info()
    print(json.dumps({"tuf_loaded_before": loaded, "rss_before": before.rss,
                      "rss_after": after.rss, "uss_before": before.uss, "uss_after": after.uss}))
    """
)


def memory(signed: SignedRelease, cache: Path) -> dict[str, float]:
    args = {
        "root": str(signed.trust.trusted_root),
        "url": signed.trust.metadata_url,
        "cache": str(cache),
        "release": [PROCESS, VERSION, PLATFORM],
    }
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src")},
    ).stdout
    return json.loads(out)


@dataclass
class Rounds:
    """(wall, CPU) seconds per fetch without and with TUF; refresh-alone seconds."""

    plain: list[tuple[float, float]] = field(default_factory=list)
    with_tuf: list[tuple[float, float]] = field(default_factory=list)
    refresh: list[float] = field(default_factory=list)

    @property
    def median_plain(self) -> float:
        return statistics.median(p[0] for p in self.plain)


def rounds(
    repo: Repository,
    www: Path,
    artifact: Artifact,
    downloads: Path,
    signed: SignedRelease,
    count: int,
    refresh: bool = False,
    once: Callable[[Artifact, Path, SignedRelease | None], tuple[float, float]] = fetch_once,
) -> Rounds:
    """``count`` alternating rounds of a plain and a signed ``once`` (default: a fetch)."""
    out = Rounds()
    for i in range(count):
        for use_tuf in [False, True] if i % 2 == 0 else [True, False]:
            if use_tuf:
                repo.publish_targets()  # a new release: a full refresh next
                dump(repo, www)
                out.with_tuf.append(once(artifact, downloads, signed))
            else:
                out.plain.append(once(artifact, downloads, None))
        if refresh:
            repo.publish_targets()
            dump(repo, www)
            out.refresh.append(refresh_once(signed))
    return out


def report(title: str, measured: Rounds, size: int) -> None:
    a = measured.median_plain
    b = statistics.median(t[0] for t in measured.with_tuf)
    ca = statistics.median(p[1] for p in measured.plain)
    cb = statistics.median(t[1] for t in measured.with_tuf)
    pairs = zip(measured.plain, measured.with_tuf, strict=True)
    paired = statistics.median(t[0] / p[0] - 1 for p, t in pairs)
    print(f" {title}:")
    print(f"  without TUF: median {a * 1000:.0f} ms ({size / a / MiB:.1f} MiB/s)")
    print(f"  with TUF:    median {b * 1000:.0f} ms ({size / b / MiB:.1f} MiB/s)")
    print(
        f"  overhead: {(b - a) * 1000:+.0f} ms = {(b / a - 1) * 100:+.1f} % of the medians; "
        f"median of the rounds' own ratios {paired * 100:+.1f} % (target <= 5 %)"
    )
    print(
        f"  the keeper's CPU per round: {ca * 1000:.0f} ms without, {cb * 1000:.0f} ms with "
        f"TUF ({(cb / ca - 1) * 100:+.1f} %)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--line-mbit", type=float, default=100.0)
    parser.add_argument("--line-rounds", type=int, default=3)
    parser.add_argument("--update-rounds", type=int, default=9)
    args = parser.parse_args()
    nginx = need("nginx")
    with tempfile.TemporaryDirectory(prefix="tuf-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers run as an unprivileged user
        www = work / "www"
        www.mkdir()
        (work / "logs").mkdir()
        size = args.size_mib * MiB
        sha256 = make_file(www / "artifact.zip", size)
        port = free_port()
        line_rate = int(args.line_mbit * 1_000_000 / 8)
        conf = TUF_NGINX_CONF.format(dir=work, port=port, line_rate=line_rate)
        (work / "nginx.conf").write_text(conf)
        server = subprocess.Popen([nginx, "-c", str(work / "nginx.conf"), "-p", str(work)])
        files = FileServer()  # only its dict of served files: nginx serves them
        try:
            wait_port(port)
            base = f"http://127.0.0.1:{port}"
            repo = Repository(files)
            repo.add_target(PROCESS, VERSION, PLATFORM, b"")  # replaced below by the hashes
            entry = repo.targets.signed.targets[f"{PROCESS}/{VERSION}/{PLATFORM}.zip"]
            entry.length, entry.hashes = size, {"sha256": sha256}
            repo.publish_targets()
            dump(repo, www)
            trust = TrustSettings(
                repo.write_trusted_root(work / "root.json"),
                f"{base}/tuf/metadata/",
                work / "state" / "tuf",
            )
            signed = SignedRelease(trust, PROCESS, VERSION, PLATFORM)
            artifact = Artifact(url=f"{base}/artifact.zip", sha256=sha256, size=size)
            downloads = work / "downloads"
            fetch_once(artifact, downloads, signed)  # warm: page cache, imports, cache dir
            fast = rounds(repo, www, artifact, downloads, signed, args.rounds, refresh=True)
            line_artifact = Artifact(url=f"{base}/line/artifact.zip", sha256=sha256, size=size)
            line = rounds(repo, www, line_artifact, downloads, signed, args.line_rounds)
            node_zip = build_artifact(
                NODE_VERSION, work / "node", extra_files={"payload.bin": os.urandom(size)}
            )
            shutil.copyfile(node_zip, www / "node.zip")
            node_bytes = node_zip.read_bytes()
            repo.add_target(PROCESS, NODE_VERSION, PLATFORM, node_bytes)
            node_artifact = Artifact(
                url=f"{base}/node.zip",
                sha256=hashlib.sha256(node_bytes).hexdigest(),
                size=len(node_bytes),
            )
            node_signed = SignedRelease(trust, PROCESS, NODE_VERSION, PLATFORM)
            versions = work / "versions"

            def update(a: Artifact, d: Path, s: SignedRelease | None) -> tuple[float, float]:
                return update_once(a, d, versions, node_signed if s else None)

            whole = rounds(
                repo, www, node_artifact, downloads, signed, args.update_rounds, once=update
            )
            mem = memory(signed, work / "memory-cache")
        finally:
            server.terminate()
            server.wait(10)
            files.httpd.server_close()
    print(f"artifact {args.size_mib} MiB, nginx on loopback")
    report(f"full speed, {args.rounds} alternating rounds", fast, size)
    r = statistics.median(fast.refresh)
    print(
        f"  a full metadata refresh alone (new targets each time): median {r * 1000:.1f} ms "
        f"(min {min(fast.refresh) * 1000:.1f}) = {r / fast.median_plain * 100:.1f} % of the "
        "plain fetch at full speed: the only work TUF adds (the download is the same code "
        "on the same bytes)"
    )
    report(f"a {args.line_mbit:g} Mbit/s line, {args.line_rounds} alternating rounds", line, size)
    report(
        f"the update's own work (fetch, unpack, preflight) at full speed, "
        f"{args.update_rounds} alternating rounds",
        whole,
        size,
    )
    print(
        "  memory: a process with the keeper's [update] modules "
        f"(tuf loaded: {mem['tuf_loaded_before']}) RSS {mem['rss_before'] / MiB:.1f} MB, "
        f"USS {mem['uss_before'] / MiB:.1f} MB; after one signed check RSS "
        f"{mem['rss_after'] / MiB:.1f} MB (+{(mem['rss_after'] - mem['rss_before']) / MiB:.1f}),"
        f" USS {mem['uss_after'] / MiB:.1f} MB "
        f"(+{(mem['uss_after'] - mem['uss_before']) / MiB:.1f})"
    )


if __name__ == "__main__":
    main()
