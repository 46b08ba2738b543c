"""`nodekeeper keys`: the TUF keys and root of signed releases (decisions 083, 084).

- ``create``: new root, targets, snapshot and timestamp keys and ``1.root.json``;
- ``new-key``: one more key pair, for a rotation;
- ``sign-root``: make root N+1 from N (keys added, revoked, thresholds) and sign it, or
  add signatures to one made elsewhere; says which keys are still missing;
- ``upload-root``: install a root on the control plane;
- ``sign-targets``: re-sign the targets (expiry, a rotated targets key) without a release;
- ``expiries``: each role's version and expiry, marked when close.

Handlers import what they use, as the other command groups do.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nodekeeper.cli.errors import EXIT_USAGE, CommandError

ROLES = ("root", "targets", "snapshot", "timestamp")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 50:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 50")
    return value


def register(sub: argparse._SubParsersAction, server_opt: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="TUF signing keys and metadata of signed releases")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    passphrase = argparse.ArgumentParser(add_help=False)
    passphrase.add_argument(
        "--no-passphrase",
        action="store_true",
        help="write offline keys unencrypted (for tests only; otherwise the passphrase "
        "comes from $NODEKEEPER_KEY_PASSPHRASE or a prompt)",
    )

    create = keys_sub.add_parser(
        "create",
        parents=[passphrase],
        help="create the root, targets, snapshot and timestamp keys and 1.root.json",
    )
    create.add_argument(
        "--offline-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="where the root and targets keys go (encrypted): removable media, never the "
        "server; 1.root.json is written here too",
    )
    create.add_argument(
        "--online-dir",
        type=Path,
        required=True,
        metavar="DIR",
        help="where the snapshot and timestamp keys go (unencrypted, 0600): the server's "
        "`server run --tuf-online-keys DIR`",
    )
    create.add_argument("--root-keys", type=_positive, default=3, metavar="N", help="default 3")
    create.add_argument(
        "--threshold", type=_positive, default=2, metavar="N", help="root keys needed (default 2)"
    )
    create.add_argument(
        "--targets-keys", type=_positive, default=1, metavar="N", help="default 1 (threshold 1)"
    )
    create.add_argument(
        "--server-data-dir",
        type=Path,
        metavar="DIR",
        help="the control plane's --data-dir, if not the default: offline keys are refused there",
    )
    create.set_defaults(handler=_create)

    new_key = keys_sub.add_parser(
        "new-key", parents=[passphrase], help="create one key pair (NAME.pem, NAME.pub)"
    )
    new_key.add_argument("name", help="file name without extension, e.g. root-4, timestamp-2")
    new_key.add_argument(
        "--dir", dest="key_dir", type=Path, required=True, metavar="DIR", help="where it goes"
    )
    new_key.add_argument(
        "--online",
        action="store_true",
        help="an online key (snapshot, timestamp): unencrypted, for the server's keys dir",
    )
    new_key.set_defaults(handler=_new_key)

    sign_root = keys_sub.add_parser(
        "sign-root",
        help="make root N+1 from root N and sign it, or add signatures to it",
        description="Without NEW existing: makes it from --previous with the changes asked "
        "for (version + 1, a new expiry), then signs it with each --key. With NEW existing "
        "(made on another machine): adds each --key's signature. Either way, then says "
        "whether it is complete: at least the previous root's threshold of its keys and the "
        "new root's threshold of its own must sign.",
    )
    # Not type=Path: NEW not existing yet is the usual case (it is made), not an error.
    sign_root.add_argument("new", metavar="NEW", help="the new root file, e.g. 2.root.json")
    sign_root.add_argument(
        "--previous", type=Path, required=True, metavar="FILE", help="the current root file"
    )
    sign_root.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="ROLE=PUBFILE",
        help="add a key to a role (root, targets, snapshot, timestamp); repeatable",
    )
    sign_root.add_argument(
        "--revoke",
        action="append",
        default=[],
        metavar="ROLE=KEYID",
        help="remove a key (keyid or its first 8+ hex digits) from a role; repeatable",
    )
    sign_root.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="ROLE=N",
        help="set a role's threshold; repeatable",
    )
    sign_root.add_argument(
        "--key",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a root private key to sign with (old or new); repeatable",
    )
    sign_root.set_defaults(handler=_sign_root)

    upload = keys_sub.add_parser(
        "upload-root", parents=[server_opt], help="install a root on the control plane"
    )
    upload.add_argument(
        "root_file", type=Path, metavar="FILE", help="N.root.json, complete (see `keys sign-root`)"
    )
    upload.set_defaults(handler=_upload_root)

    sign_targets = keys_sub.add_parser(
        "sign-targets",
        parents=[server_opt],
        help="re-sign the control plane's targets (new expiry, a rotated targets key)",
    )
    sign_targets.add_argument(
        "--targets-key", type=Path, required=True, metavar="FILE", help="a targets private key"
    )
    add_trusted_root_option(sign_targets)
    sign_targets.set_defaults(handler=_sign_targets)

    expiries = keys_sub.add_parser(
        "expiries", help="each TUF role's version and expiry ('!' marks those close to it)"
    )
    expiries.add_argument(
        "--server", help="control plane URL (or $NODEKEEPER_SERVER); no admin token needed"
    )
    expiries.add_argument(
        "--file",
        dest="files",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a metadata file to read instead of the server's; repeatable",
    )
    expiries.set_defaults(handler=_expiries)


def _say(message: str) -> None:
    print(f"nodekeeper: {message}", file=sys.stderr)


# -- create ---------------------------------------------------------------------------


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def _check_dir(path: Path | None, option: str) -> None:
    """A directory option that names something else: refused before anything happens."""
    if path is not None and path.exists() and not path.is_dir():
        raise CommandError(f"{option} {path} is a file, not a directory", EXIT_USAGE)


def _create(args: argparse.Namespace) -> int:
    from tuf.api.metadata import Metadata, Root

    from . import tuf_keys
    from .commands import default_data_dir
    from .tuf_repo import expires_at

    offline, online = args.offline_dir, args.online_dir
    _check_dir(offline, "--offline-dir")
    _check_dir(online, "--online-dir")
    _check_dir(args.server_data_dir, "--server-data-dir")
    if args.threshold > args.root_keys:
        raise CommandError(
            f"--threshold {args.threshold} is more than --root-keys {args.root_keys}", EXIT_USAGE
        )
    for data_dir in filter(None, (args.server_data_dir, default_data_dir())):
        if _inside(offline, data_dir):
            raise CommandError(
                f"--offline-dir {offline} is inside the control plane's data dir {data_dir}: "
                "offline keys must never be on the server; use removable media",
                EXIT_USAGE,
            )
    if _inside(offline, online) or _inside(online, offline):
        raise CommandError(
            "--offline-dir and --online-dir must be apart: the online dir goes to the server",
            EXIT_USAGE,
        )
    names = [f"root-{i}" for i in range(1, args.root_keys + 1)]
    names += [f"targets-{i}" for i in range(1, args.targets_keys + 1)]
    clashes = [offline / f"{n}.pem" for n in names] + [offline / "1.root.json"]
    clashes += [online / "snapshot.pem", online / "timestamp.pem"]
    existing = [str(p) for p in clashes if p.exists()]
    if existing:
        raise CommandError(
            f"{', '.join(existing)} already exist; keys are never overwritten: choose empty "
            "directories",
            EXIT_USAGE,
        )
    try:
        passphrase = None if args.no_passphrase else tuf_keys.new_passphrase()
    except tuf_keys.KeyFileError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    try:
        for d in (offline, online):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise CommandError(f"cannot create {exc.filename}: {exc.strerror}") from None

    signers = {name: tuf_keys.generate() for name in names}
    online_signers = {role: tuf_keys.generate() for role in ("snapshot", "timestamp")}
    root = Metadata(Root(expires=expires_at(time.time(), "root")))
    for name, signer in signers.items():
        root.signed.add_key(signer.public_key, name.split("-")[0])
    for role, signer in online_signers.items():
        root.signed.add_key(signer.public_key, role)
    root.signed.roles["root"].threshold = args.threshold
    for name, signer in signers.items():
        if name.startswith("root-"):
            root.sign(signer, append=True)
    try:
        for name, signer in signers.items():
            tuf_keys.write_key(signer, offline, name, passphrase)
        for role, signer in online_signers.items():
            tuf_keys.write_key(signer, online, role, None)
    except tuf_keys.KeyFileError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot write {exc.filename}: {exc.strerror}") from None
    root_file = offline / "1.root.json"
    root_file.write_bytes(root.to_bytes())
    print(f"root: {args.threshold} of {args.root_keys} keys, targets: {args.targets_keys} key(s)")
    for name, signer in signers.items():
        print(f"  {name}: {tuf_keys.keyid_prefix(signer.public_key.keyid)}  {offline / name}.pem")
    for role, signer in online_signers.items():
        print(f"  {role}: {tuf_keys.keyid_prefix(signer.public_key.keyid)}  {online / role}.pem")
    print(
        f"wrote {root_file}: ship it to keepers ([update] trusted_root; `make msi TRUSTED_ROOT=`)"
    )
    print(
        f"next: run the server with --tuf-online-keys {online}, then "
        f"`nodekeeper keys upload-root {root_file}`; keep {offline} offline"
    )
    return 0


def _new_key(args: argparse.Namespace) -> int:
    from . import tuf_keys

    _check_dir(args.key_dir, "--dir")
    if "/" in args.name or "\\" in args.name or args.name.startswith("."):
        raise CommandError(f"{args.name!r} must be a plain file name, e.g. root-4", EXIT_USAGE)
    try:
        passphrase = None if args.online or args.no_passphrase else tuf_keys.new_passphrase()
        args.key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        signer = tuf_keys.generate()
        path = tuf_keys.write_key(signer, args.key_dir, args.name, passphrase)
    except tuf_keys.KeyFileError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise CommandError(f"cannot write into {args.key_dir}: {exc.strerror}") from None
    print(
        f"{tuf_keys.keyid_prefix(signer.public_key.keyid)}  {path} "
        f"(public: {path.with_suffix('.pub')})"
    )
    return 0


# -- sign-root ------------------------------------------------------------------------


def _pairs(items: list[str], option: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        role, sep, value = item.partition("=")
        if not sep or role not in ROLES or not value:
            raise CommandError(
                f"{option} {item!r} must be ROLE=VALUE with ROLE one of {', '.join(ROLES)}",
                EXIT_USAGE,
            )
        out.append((role, value))
    return out


def _read_root(path: Path, what: str):
    from tuf.api.metadata import Metadata, Root
    from tuf.api.serialization import DeserializationError

    try:
        md = Metadata[Root].from_bytes(path.read_bytes())
    except OSError as exc:
        raise CommandError(f"{what} {path}: {exc.strerror}", EXIT_USAGE) from None
    except (DeserializationError, ValueError, TypeError, KeyError) as exc:
        raise CommandError(f"{what} {path} is not TUF root metadata: {exc}", EXIT_USAGE) from None
    if not isinstance(md.signed, Root):
        raise CommandError(f"{what} {path} is {md.signed.type} metadata, not a root", EXIT_USAGE)
    return md


def _find_keyid(root, role: str, given: str) -> str:
    matches = [k for k in root.roles[role].keyids if k.startswith(given.lower())]
    if len(given) < 8 or len(matches) != 1:
        have = ", ".join(k[:8] for k in root.roles[role].keyids)
        raise CommandError(
            f"--revoke {role}={given}: no single {role} key starts with it (8+ hex digits; "
            f"the {role} keys: {have})",
            EXIT_USAGE,
        )
    return matches[0]


def _sign_root(args: argparse.Namespace) -> int:
    from . import tuf_keys
    from .tuf_repo import describe_missing, expires_at

    new_path = Path(args.new)
    if new_path.is_dir():
        raise CommandError(f"{new_path} is a directory; give the new root's file name", EXIT_USAGE)
    # The keys first: a wrong --key is found before anything is read or made.
    signers = []
    for path in args.key:
        try:
            signers.append((path, tuf_keys.load_signer(path, tuf_keys.ask_passphrase)))
        except tuf_keys.KeyFileError as exc:
            raise CommandError(f"--key: {exc}", EXIT_USAGE) from None
    previous = _read_root(args.previous, "--previous")
    changes = args.add or args.revoke or args.threshold
    if new_path.exists():
        if changes:
            raise CommandError(
                f"{new_path} exists: --add, --revoke and --threshold would void its signatures; "
                "only --key adds signatures to it (or remove it to start again)",
                EXIT_USAGE,
            )
        new = _read_root(new_path, "the new root")
        if new.signed.version != previous.signed.version + 1:
            raise CommandError(
                f"{new_path} is root v{new.signed.version}, not the next after {args.previous} "
                f"(v{previous.signed.version})",
                EXIT_USAGE,
            )
    else:
        new = _read_root(args.previous, "--previous")
        new.signed.version += 1
        new.signed.expires = expires_at(time.time(), "root")
        new.signatures.clear()
        try:
            for role, value in _pairs(args.revoke, "--revoke"):
                new.signed.revoke_key(_find_keyid(new.signed, role, value), role)
            for role, value in _pairs(args.add, "--add"):
                new.signed.add_key(tuf_keys.load_public(Path(value)), role)
        except tuf_keys.KeyFileError as exc:
            raise CommandError(f"--add: {exc}", EXIT_USAGE) from None
        except ValueError as exc:  # tuf: revoking a role's last key, for one
            raise CommandError(str(exc), EXIT_USAGE) from None
        for role, value in _pairs(args.threshold, "--threshold"):
            if not value.isdigit() or not 1 <= int(value) <= len(new.signed.roles[role].keyids):
                raise CommandError(
                    f"--threshold {role}={value}: must be from 1 to the role's "
                    f"{len(new.signed.roles[role].keyids)} keys",
                    EXIT_USAGE,
                )
            new.signed.roles[role].threshold = int(value)
        for role in ROLES:
            if len(new.signed.roles[role].keyids) < new.signed.roles[role].threshold:
                raise CommandError(
                    f"the {role} role would have {len(new.signed.roles[role].keyids)} keys for "
                    f"a threshold of {new.signed.roles[role].threshold}: add keys or lower it",
                    EXIT_USAGE,
                )
    root_keys = set(previous.signed.roles["root"].keyids) | set(new.signed.roles["root"].keyids)
    for path, signer in signers:
        keyid = signer.public_key.keyid
        if keyid not in root_keys:
            raise CommandError(
                f"--key {path} ({keyid[:8]}) is not a root key of v{previous.signed.version} or "
                f"v{new.signed.version}; nothing was written",
                EXIT_USAGE,
            )
        new.sign(signer, append=True)
    new_path.write_bytes(new.to_bytes())
    result = new.signed.get_root_verification_result(
        previous.signed, new.signed_bytes, new.signatures
    )
    if result.verified:
        print(f"{new_path}: root v{new.signed.version}, complete (old and new thresholds met)")
        print(f"next: `nodekeeper keys upload-root {new_path}`")
    else:
        print(f"{new_path}: root v{new.signed.version}, NOT complete: {describe_missing(result)}")
        print(
            "sign it where those keys are: "
            "`nodekeeper keys sign-root NEW --previous OLD --key FILE`"
        )
    return 0


# -- against a control plane ----------------------------------------------------------


def _client(args: argparse.Namespace):
    from .commands import _client as admin_client

    return admin_client(args)


def _upload_root(args: argparse.Namespace) -> int:
    from .client import AdminClientError

    try:
        text = args.root_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.root_file}: {exc}", EXIT_USAGE) from None
    _read_root(args.root_file, "the root file")  # checked here, the server checks it again
    client = _client(args)
    try:
        result = client.request("POST", "/v1/admin/tuf/root", json={"root": text})
    except AdminClientError as exc:
        raise CommandError(str(exc)) from None
    finally:
        client.close()
    print(f"the control plane now has TUF root v{result['version']}")
    for note in result.get("notes") or ():
        _say(f"note: {note}")
    return 0


def add_trusted_root_option(parser: argparse.ArgumentParser) -> None:
    """`--trusted-root`, for every command that signs targets (decision 084)."""
    parser.add_argument(
        "--trusted-root",
        type=Path,
        metavar="FILE",
        help="the root you trust, to check the control plane's root chain against before "
        "signing anything it serves (default: 1.root.json beside the --targets-key file, "
        "where `keys create` writes it)",
    )


def read_trusted_root(trusted_root: Path | None, targets_key: Path) -> bytes:
    """The bytes of ``--trusted-root`` or of the ``1.root.json`` beside the key."""
    from tuf.api.metadata import Metadata, Root

    path = trusted_root or targets_key.parent / "1.root.json"
    try:
        data = path.read_bytes()
    except OSError as exc:
        hint = "" if trusted_root else " (none beside the targets key: pass --trusted-root FILE)"
        raise CommandError(
            f"--trusted-root: cannot read {path}: {exc.strerror or exc}{hint}", EXIT_USAGE
        ) from None
    try:
        if not isinstance(Metadata[Root].from_bytes(data).signed, Root):
            raise ValueError("it is not a root")
    except Exception as exc:  # tuf's DeserializationError and what it wraps
        raise CommandError(
            f"--trusted-root: {path} is not a TUF root.json ({exc}); pass the 1.root.json "
            "of `nodekeeper keys create`",
            EXIT_USAGE,
        ) from None
    return data


def _sign_targets(args: argparse.Namespace) -> int:
    from .client import AdminClientError, PublishInputError
    from .tuf_keys import KeyFileError, ask_passphrase, load_signer

    try:
        signer = load_signer(args.targets_key, ask_passphrase)
    except KeyFileError as exc:
        raise CommandError(f"--targets-key: {exc}", EXIT_USAGE) from None
    trusted = read_trusted_root(args.trusted_root, args.targets_key)
    client = _client(args)
    try:
        chain = client.signing_chain(signer, trusted)
        if chain is None:
            raise CommandError("this control plane has no TUF root: nothing to sign")
        current = client.current_targets()
        data, _version = client.next_targets(chain, signer, [])  # checks what it builds on
        result = client.request("POST", "/v1/admin/tuf/targets", json={"targets": data.decode()})
    except PublishInputError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from None
    except AdminClientError as exc:
        raise CommandError(str(exc)) from None
    finally:
        client.close()
    print(f"targets v{result['version']} signed, {result['entries']} entries, expires in 90 days")
    carried = _carried_after_rotation(chain, current)
    if carried:
        print(carried)
    return 0


def _carried_after_rotation(chain: list[bytes], current: bytes | None) -> str | None:
    """After a root that replaced the targets key, what the new key now vouches for: the
    entries the old key signed, listed so the release manager can check them (after a
    theft, an entry the thief published would be among them)."""
    from tuf.api.metadata import Metadata, Targets

    from .tuf_publish import signed_under

    if current is None:
        return None
    under = signed_under(chain[-1], current, list(reversed(chain[:-1])))
    root_version = Metadata.from_bytes(chain[-1]).signed.version
    if under == root_version:
        return None
    entries = sorted(Metadata[Targets].from_bytes(current).signed.targets)
    listed = "\n".join(f"  {path}" for path in entries) or "  (none)"
    return (
        f"note: the targets were signed under root v{under} by a key root v{root_version} "
        f"no longer trusts; the new key now vouches for these entries, check each is a "
        f"release you published (if one is not, publish a newer release and set the "
        f"minimum above it):\n{listed}"
    )


def _expiries(args: argparse.Namespace) -> int:
    import os

    from .tuf_expiry import Expiry, describe, warning

    now = time.time()
    if args.files:
        found = [_expiry_of_file(path) for path in args.files]
    else:
        from nodekeeper.version.schema import check_url

        server = args.server or os.environ.get("NODEKEEPER_SERVER")
        if not server:
            raise CommandError(
                "pass --server URL (or set $NODEKEEPER_SERVER), or --file FILE", EXIT_USAGE
            )
        try:
            check_url(server)
        except ValueError:
            raise CommandError(
                f"the control plane URL {server!r} must be like http://127.0.0.1:7780", EXIT_USAGE
            ) from None
        found = _expiries_from(server)
    if not found:
        print("no TUF metadata: the control plane does not sign releases (no root uploaded)")
        return 0
    marked = 0
    for e in found:
        assert isinstance(e, Expiry)
        line = warning(e, now)
        mark = "!" if line else " "
        marked += bool(line)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(e.expires))
        left = "expired" if e.left(now) <= 0 else f"in {describe(e.left(now))}"
        print(f"{mark} {e.role:<10} v{e.version:<5} expires {when} ({left})")
        if line:
            print(f"    {line}")
    return 0


def _expiry_of_file(path: Path):
    from tuf.api.metadata import Metadata
    from tuf.api.serialization import DeserializationError

    from .tuf_expiry import Expiry

    try:
        md = Metadata.from_bytes(path.read_bytes())
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}", EXIT_USAGE) from None
    except (DeserializationError, ValueError) as exc:
        raise CommandError(f"{path} is not TUF metadata: {exc}", EXIT_USAGE) from None
    return Expiry(md.signed.type, md.signed.version, md.signed.expires.timestamp())


def _expiries_from(server: str) -> list:
    """From the public metadata (no token): the newest root (walking the chain from 1
    as a keeper does), the timestamp, the snapshot it names and the targets that names."""
    import httpx
    from tuf.api.metadata import Metadata

    from nodekeeper.signing.layout import metadata_url

    from .tuf_expiry import Expiry

    base = metadata_url(server)

    def get(name: str) -> Metadata | None:
        try:
            response = httpx.get(base + name, timeout=30)
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach {base}: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise CommandError(f"{base}{name}: HTTP {response.status_code}")
        return Metadata.from_bytes(response.content)

    found = []
    root = None
    version = 1
    while (md := get(f"{version}.root.json")) is not None:
        root, version = md, version + 1
    if root is None:
        return []
    found.append(root)
    timestamp = get("timestamp.json")
    if timestamp is not None:
        snap = get(f"{timestamp.signed.snapshot_meta.version}.snapshot.json")
        if snap is not None:
            targets = get(f"{snap.signed.meta['targets.json'].version}.targets.json")
            found += [md for md in (targets, snap) if md is not None]
        found.append(timestamp)
    return [
        Expiry(md.signed.type, md.signed.version, md.signed.expires.timestamp()) for md in found
    ]
