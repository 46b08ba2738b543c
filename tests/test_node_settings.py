"""nodekeeper.node_settings: each validator with good and bad values, on real files.

Every refusal must name its field (``.field`` and in words) and say how to fix it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nodekeeper import node_settings
from nodekeeper.keeper.config import UpdateConfig
from nodekeeper.node_settings import (
    FIELDS,
    InvalidSetting,
    check_allocation,
    check_email,
    check_external_address,
    check_identity_dir,
    check_port,
    check_server_url,
    check_storage,
    check_wallet,
    checksum_address,
    max_allocation,
    resolves,
)
from storagenode.identity import new_identity_pem

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

# How each field is named in its messages.
WORDS = {
    "wallet": "wallet",
    "email": "email",
    "external_address": "external address",
    "port": "port",
    "server_url": "server URL",
    "identity_dir": "identity folder",
    "storage_dir": "storage folder",
    "allocation": "allocation",
}


def refused(call: Callable[[], Any], field: str, *needles: str) -> str:
    """The call raises InvalidSetting for ``field``; its message names the field and
    holds each needle (the fix). Returns the message."""
    with pytest.raises(InvalidSetting) as info:
        call()
    message = str(info.value)
    assert info.value.field == field, message
    assert field in FIELDS
    assert WORDS[field] in message, message
    for needle in needles:
        assert needle in message, message
    assert isinstance(info.value, ValueError)
    return message


# -- wallet: the test vectors of EIP-55 (https://eips.ethereum.org/EIPS/eip-55) ----------

EIP55_ALL_CAPS = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
]
EIP55_ALL_LOWER = [
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
]
EIP55_NORMAL = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55_ALL_CAPS + EIP55_ALL_LOWER + EIP55_NORMAL)
def test_eip55_vectors_are_accepted_as_they_are(address: str) -> None:
    assert check_wallet(address) == address
    assert check_wallet(f"  {address}\n") == address  # pasted with whitespace


@pytest.mark.parametrize("address", EIP55_ALL_CAPS + EIP55_NORMAL)
def test_checksum_address_gives_the_eip55_forms(address: str) -> None:
    # The all-caps vectors are their own checksummed form (every letter's nibble ≥ 8).
    assert checksum_address(address.lower()) == address
    assert checksum_address(address.upper()[2:]) == address


def test_one_flipped_letter_fails_with_the_checksummed_form() -> None:
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    flipped = good[:-1] + "D"  # the last letter in upper case
    assert flipped != good and flipped.lower() == good.lower()
    message = refused(lambda: check_wallet(flipped), "wallet", "EIP-55", good, "copy")
    assert flipped in message


def test_a_mistyped_digit_in_a_checksummed_address_fails() -> None:
    typo = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAee"  # last d → e
    refused(lambda: check_wallet(typo), "wallet", "EIP-55", "mistyped")


def test_keccak256_is_not_sha3_256() -> None:
    # The trap the module avoids: the final SHA-3 pads differently from Keccak.
    keccak_empty = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert node_settings._keccak256_hex(b"") == keccak_empty
    assert hashlib.sha3_256(b"").hexdigest() != keccak_empty


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "must start with 0x"),
        ("0X5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED", "must start with 0x"),
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe", "39 characters"),
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed0", "41 characters"),
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg", "not hex digits ('g')"),
        ("0x5aAeb6053F3E94C9 9A09f33669435E7Ef1BeAed", "not hex digits (' ')"),
    ],
)
def test_bad_wallets(text: str, needle: str) -> None:
    refused(lambda: check_wallet(text), "wallet", needle, "paste the address")


# -- email --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "operator@example.com",
        "first.last+storj@mail.example.co.uk",
        "o'brien@example.org",
        "x@xn--bcher-kva.example",
        "jürgen@bücher.de",
        " operator@example.com ",
    ],
)
def test_good_emails(text: str) -> None:
    assert check_email(text) == text.strip()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("operator", "exactly one @"),
        ("operator@@example.com", "exactly one @"),
        ("a@b.com,c@d.com", "exactly one @"),
        ("Operator <operator@example.com>", "space"),
        ("operator @example.com", "space"),
        ("operator@localhost", "needs a dot"),
        ("operator@example.c", "two letters"),
        ("operator@example..com", "not name@domain"),
        ("operator@.example.com", "not name@domain"),
        ("@example.com", "not name@domain"),
        ("operator@", "not name@domain"),
    ],
)
def test_bad_emails(text: str, needle: str) -> None:
    refused(lambda: check_email(text), "email", needle, "name@example.com")


# -- external address and port -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mynode.example.com:28967", "mynode.example.com:28967"),
        ("MyNode.Example.COM:28967", "mynode.example.com:28967"),
        ("mynode.example.com.:28967", "mynode.example.com:28967"),
        ("node-7.ddns.net:1", "node-7.ddns.net:1"),
        ("localhost:65535", "localhost:65535"),
        ("203.0.113.7:28967", "203.0.113.7:28967"),
        ("192.168.1.20:28967", "192.168.1.20:28967"),  # a LAN test network stays possible
        ("[2001:DB8::7]:28967", "[2001:db8::7]:28967"),
        ("[::1]:7777", "[::1]:7777"),
        ("bücher.example:28967", "xn--bcher-kva.example:28967"),
        (" mynode.example.com:028967 ", "mynode.example.com:28967"),
    ],
)
def test_good_external_addresses(text: str, expected: str) -> None:
    assert check_external_address(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("mynode.example.com", "has no port"),
        ("203.0.113.7", "has no port"),
        ("mynode.example.com:", "not a port"),
        ("mynode.example.com:http", "not a port"),
        ("mynode.example.com:0", "out of range"),
        ("mynode.example.com:65536", "out of range"),
        (":28967", "has no host"),
        ("2001:db8::7:28967", "in brackets"),
        ("[2001:db8::7]", "needs a port"),
        ("[2001:db8::zz]:28967", "not an IPv6 address"),
        ("http://mynode.example.com:28967", "no http://"),
        ("mynode.example.com:28967/", "no http://"),
        ("my_node.example.com:28967", "not a host name"),
        ("-node.example.com:28967", "not a host name"),
        ("my node.example.com:28967", "not a host name"),
        ("1.2.3:28967", "neither an IPv4 address nor a name"),
        ("300.1.1.1:28967", "neither an IPv4 address nor a name"),
        ("0.0.0.0:28967", "not an address others can connect to"),
        ("[::]:28967", "not an address others can connect to"),
        ("224.0.0.1:28967", "not an address others can connect to"),
    ],
)
def test_bad_external_addresses(text: str, needle: str) -> None:
    refused(lambda: check_external_address(text), "external_address", needle)


def test_the_port_is_required_and_the_fix_is_said() -> None:
    refused(lambda: check_external_address("node.example.com"), "external_address", "HOST:PORT")


@pytest.mark.parametrize(("text", "expected"), [("28967", 28967), (" 1 ", 1), (65535, 65535)])
def test_good_ports(text: str | int, expected: int) -> None:
    assert check_port(text) == expected


@pytest.mark.parametrize("text", ["", "0", "65536", "-1", "http", "28967.0", "²", True])
def test_bad_ports(text: Any) -> None:
    refused(lambda: check_port(text), "port", "1-65535")


def test_resolves_loopback_names_and_literals() -> None:
    assert resolves("localhost", 5.0)
    assert resolves("127.0.0.1", 5.0)
    assert resolves("[::1]", 5.0)


def test_resolves_refuses_within_its_deadline() -> None:
    # .invalid never resolves (RFC 6761); offline, the resolver may fail or hang: either
    # way the answer is False and comes by the deadline.
    started = time.monotonic()
    assert not resolves("no-such-node.invalid", 2.0)
    assert time.monotonic() - started < 2.0 + 1.0
    assert not resolves("", 1.0)


# -- server URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://updates.example.com", "https://updates.example.com"),
        ("https://updates.example.com/", "https://updates.example.com"),
        ("HTTP://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("https://[2001:db8::1]:8443/nodekeeper/", "https://[2001:db8::1]:8443/nodekeeper"),
        (" http://localhost:9000 ", "http://localhost:9000"),
    ],
)
def test_good_server_urls(text: str, expected: str) -> None:
    assert check_server_url(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("updates.example.com", "http:// or https://"),
        ("ftp://updates.example.com", "http:// or https://"),
        ("https://", "no host name"),
        ("https://:8080", "no host name"),
        ("https://updates.example.com:99999", "bad port"),
        ("https://updates.example.com:0", "port 0"),
        ("https://upd ates.example.com", "space"),
        ("https://under_score.example.com", "not a host name"),
        ("https://user:secret@updates.example.com", "user name"),
        ("https://updates.example.com/?x=1", "?query"),
        ("https://updates.example.com/#top", "#fragment"),
    ],
)
def test_bad_server_urls(text: str, needle: str) -> None:
    refused(lambda: check_server_url(text), "server_url", needle)


def test_the_keeper_config_checks_its_server_with_the_same_function() -> None:
    assert UpdateConfig(server="HTTPS://updates.example.com/").server == (
        "https://updates.example.com"
    )
    with pytest.raises(pydantic.ValidationError) as info:
        UpdateConfig(server="https://user:pw@updates.example.com")
    assert "may not hold a user name" in str(info.value)


# -- identity folder ------------------------------------------------------------------------


def _identity(folder: Path) -> Path:
    folder.mkdir(parents=True)
    pem, _node_id = new_identity_pem()
    (folder / "identity.key").write_bytes(pem)
    return folder


def test_an_identity_folder_with_its_key_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _identity(tmp_path / "identity")
    assert check_identity_dir(folder) == folder
    monkeypatch.chdir(tmp_path)  # a relative path comes back absolute
    assert check_identity_dir("identity") == folder


def test_identity_folders_that_cannot_be_used(tmp_path: Path) -> None:
    fix = "choose the folder that holds this node's identity.key"
    refused(lambda: check_identity_dir(tmp_path / "none"), "identity_dir", "does not exist", fix)
    (tmp_path / "empty").mkdir()
    refused(lambda: check_identity_dir(tmp_path / "empty"), "identity_dir", "no identity.key", fix)
    key = _identity(tmp_path / "id") / "identity.key"
    refused(lambda: check_identity_dir(key), "identity_dir", "not a folder", str(key.parent))
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "identity.key").write_bytes(b"not a key\n")
    refused(lambda: check_identity_dir(tmp_path / "garbage"), "identity_dir", "readable", fix)


def test_a_storj_identity_is_named_as_such(tmp_path: Path) -> None:
    # Storj's identity folder: identity.key is an ECDSA P-256 key, certificates beside it.
    folder = tmp_path / "storj"
    folder.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (folder / "identity.key").write_bytes(pem)
    (folder / "identity.cert").write_text("-----BEGIN CERTIFICATE-----\n")
    refused(lambda: check_identity_dir(folder), "identity_dir", "ed25519", "Storj identity")


@pytest.mark.skipif(IS_ROOT, reason="root reads a chmod-000 file")
def test_an_unreadable_identity_is_refused(tmp_path: Path) -> None:
    folder = _identity(tmp_path / "identity")
    (folder / "identity.key").chmod(0)
    refused(lambda: check_identity_dir(folder), "identity_dir", "cannot read")


# -- storage folder and allocation ------------------------------------------------------------


def test_allocation_rule_is_free_space_over_one_point_one() -> None:
    assert max_allocation(1100) == 1000
    check_allocation(1000, 1100, Path("/x"))
    refused(lambda: check_allocation(1001, 1100, Path("/x")), "allocation", "at most 1 KB")


def test_an_existing_storage_folder(tmp_path: Path) -> None:
    assert check_storage(tmp_path, "1 MB") == (tmp_path, 10**6)
    assert check_storage(tmp_path, 4096) == (tmp_path, 4096)
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


def test_a_storage_folder_not_made_yet_is_judged_by_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = tmp_path / "a" / "b" / "pieces"
    half = max_allocation(shutil.disk_usage(tmp_path).free) // 2
    assert check_storage(storage, str(half)) == (storage, half)
    assert list(tmp_path.iterdir()) == []  # nothing created
    monkeypatch.chdir(tmp_path)
    assert check_storage("pieces", "1 MB") == (tmp_path / "pieces", 10**6)


def test_allocation_above_free_space_is_refused(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    message = refused(
        lambda: check_storage(tmp_path / "new", str(free)),
        "allocation",
        "does not fit",
        "10%",
        "allocate at most",
        "free some space",
    )
    assert str(tmp_path) in message


@pytest.mark.parametrize("text", ["lots", "0", "-1 GB", "5 XB", ""])
def test_allocations_that_do_not_parse(tmp_path: Path, text: str) -> None:
    refused(lambda: check_storage(tmp_path, text), "allocation", "GB")


def test_storage_folders_that_cannot_be_used(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    refused(
        lambda: check_storage(tmp_path / "file", "1 MB"),
        "storage_dir",
        "not a directory",
        "choose a directory",
    )
    refused(
        lambda: check_storage(tmp_path / "file" / "sub", "1 MB"),
        "storage_dir",
        "cannot create",
        "is a file",
    )


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_an_unwritable_storage_folder_even_as_root() -> None:
    # sysfs refuses new files to every user, root included, unlike a chmod-ed dir.
    refused(
        lambda: check_storage("/sys/kernel", "1 MB"),
        "storage_dir",
        "not writable",
        "give this user write access or choose another folder",
    )
    refused(
        lambda: check_storage("/sys/kernel/not-yet/pieces", "1 MB"),
        "storage_dir",
        "not writable",
        "where /sys/kernel/not-yet/pieces would go",
    )
