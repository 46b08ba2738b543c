#!/usr/bin/env python3
"""Writes DLLs that Debian's Wine 8 lacks but our Windows wheels import, into a prefix.

    scripts/wine-shims.py PREFIX

Test environment only; nothing here goes into the runtime or the MSI.

bcryptprimitives.dll!ProcessPrng: Rust 1.78+ links every Windows binary against it
(pydantic-core, cryptography); Wine gained it in 9.x. Without it `import pydantic` fails
under Wine 8 with "DLL load failed ... Module not found". The shim is a DLL without code:
its one export forwards to advapi32!SystemFunction036 (RtlGenRandom), which has the same
x64 calling convention and fills the buffer from the same system RNG. Rust ignores
ProcessPrng's return value (documented as always TRUE), so BOOLEAN vs BOOL is moot.

The DLL is written byte by byte (PE32+, one read-only section holding the export table)
so that no MinGW toolchain is needed. A prefix whose Wine already has the DLL is left
alone.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

SHIMS = {"bcryptprimitives.dll": {"ProcessPrng": "advapi32.SystemFunction036"}}

FILE_ALIGN = 0x200
SECTION_ALIGN = 0x1000
SECTION_RVA = 0x1000


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def export_section(dll_name: str, forwards: dict[str, str]) -> bytes:
    """The .rdata section: export directory, its three arrays, then the strings. Every
    function RVA points inside the export directory, which is what marks a forwarder."""
    names = sorted(forwards)  # the name table must be sorted for the loader's search
    count = len(names)
    directory = 40
    functions_at = SECTION_RVA + directory
    names_at = functions_at + 4 * count
    ordinals_at = names_at + 4 * count
    strings_at = ordinals_at + 2 * count
    strings = bytearray()

    def add(text: str) -> int:
        rva = strings_at + len(strings)
        strings.extend(text.encode("ascii") + b"\0")
        return rva

    dll_name_rva = add(dll_name)
    name_rvas = [add(name) for name in names]
    target_rvas = [add(forwards[name]) for name in names]
    header = struct.pack(
        "<IIHHIIIIIII", 0, 0, 0, 0, dll_name_rva, 1, count, count,
        functions_at, names_at, ordinals_at,
    )  # fmt: skip
    body = (
        struct.pack(f"<{count}I", *target_rvas)
        + struct.pack(f"<{count}I", *name_rvas)
        + struct.pack(f"<{count}H", *range(count))
        + bytes(strings)
    )
    return header + body


def forwarder_dll(dll_name: str, forwards: dict[str, str]) -> bytes:
    section = export_section(dll_name, forwards)
    raw_size = _align(len(section), FILE_ALIGN)
    image_size = SECTION_RVA + _align(len(section), SECTION_ALIGN)
    dos = b"MZ" + bytes(58) + struct.pack("<I", 64)  # e_lfanew: PE header right after
    coff = struct.pack(
        "<HHIIIHH", 0x8664, 1, 0, 0, 0, 240,
        0x0002 | 0x0020 | 0x2000,  # executable image, large address aware, DLL
    )  # fmt: skip
    optional = struct.pack(
        "<HBBIIIIIQIIHHHHHHIIIIHHQQQQII",
        0x20B, 14, 0,  # PE32+, linker version
        0, raw_size, 0,  # size of code, initialised data, uninitialised data
        0, 0,  # no entry point (no code at all), base of code
        0x180000000, SECTION_ALIGN, FILE_ALIGN,
        6, 0, 0, 0, 6, 0,  # OS, image and subsystem versions: Vista+
        0, image_size, FILE_ALIGN, 0,  # win32 version, image size, headers size, checksum
        3, 0x0100,  # console subsystem; NX compatible
        0x100000, 0x1000, 0x100000, 0x1000, 0, 16,  # stack/heap, loader flags, dirs
    )  # fmt: skip
    directories = struct.pack("<II", SECTION_RVA, len(section)) + bytes(15 * 8)
    section_header = struct.pack(
        "<8sIIIIIIHHI", b".rdata", len(section), SECTION_RVA, raw_size, FILE_ALIGN,
        0, 0, 0, 0, 0x40000040,  # initialised data, readable
    )  # fmt: skip
    headers = dos + b"PE\0\0" + coff + optional + directories + section_header
    return headers.ljust(FILE_ALIGN, b"\0") + section.ljust(raw_size, b"\0")


def install(prefix: Path) -> list[str]:
    system32 = prefix / "drive_c" / "windows" / "system32"
    written = []
    for name, forwards in SHIMS.items():
        target = system32 / name
        if not target.exists():
            target.write_bytes(forwarder_dll(name, forwards))
            written.append(name)
    return written


if __name__ == "__main__":
    for name in install(Path(sys.argv[1])):
        print(f"wine-shims: wrote {name}", file=sys.stderr)
