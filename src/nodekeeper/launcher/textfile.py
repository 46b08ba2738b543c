"""Config text as operators' editors save it.

TOML is UTF-8, but Windows editors write other things: Notepad's "Unicode" is UTF-16 LE
with a byte-order mark, "Unicode big endian" UTF-16 BE with one, and older editors put a
BOM in front of UTF-8. A BOM says unambiguously what the bytes are, so those are accepted.
Everything else that is not UTF-8 (the "ANSI" code page, UTF-16 without a BOM, UTF-32) is
refused with where and what, and the fix: save the file as UTF-8. Guessing a code page
would silently turn a path with an "é" into a different path.

Used by every reader of an operator-edited config: the keeper's ``keeper.toml`` and the
storage node's ``config.toml``. In the launcher package (standard library only) because
the launcher reads ``keeper.toml`` too and may import nothing outside its package.
"""

from __future__ import annotations

import codecs
from pathlib import Path

FIX = "save the file as UTF-8 (in Notepad: File > Save As > Encoding: UTF-8)"


class TextDecodeError(ValueError):
    """The bytes are not text this reader takes; the message says what and the fix."""


def decode_config_text(data: bytes) -> str:
    """The text of a config file's bytes, BOM removed (pure)."""
    # UTF-32 LE's BOM begins with UTF-16 LE's, so it is checked first.
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise TextDecodeError(f"the file is UTF-32 text; {FIX}")
    for bom, encoding, name in (
        (codecs.BOM_UTF8, "utf-8", "UTF-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
    ):
        if data.startswith(bom):
            return _decode(data[len(bom) :], encoding, name, offset=len(bom))
    if b"\x00" in data:
        # UTF-16 without a BOM: half of an ASCII file's bytes are NUL; UTF-8 text has none.
        raise TextDecodeError(
            f"the file contains NUL bytes: UTF-16 without a byte-order mark, or not text; {FIX}"
        )
    return _decode(data, "utf-8", "UTF-8", offset=0)


def read_config_text(path: Path) -> str:
    """Read and decode ``path``; OSError as the OS raised it, TextDecodeError otherwise."""
    return decode_config_text(path.read_bytes())


def _decode(data: bytes, encoding: str, name: str, offset: int) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        if name != "UTF-8":
            raise TextDecodeError(
                f"the file starts with a {name} byte-order mark but is not valid {name} "
                f"(at byte {exc.start + offset}); {FIX}"
            ) from None
        line, column = _position(data, exc.start)
        raise TextDecodeError(
            f"byte 0x{data[exc.start]:02X} at line {line}, column {column} is not UTF-8 "
            f"(the file is in another encoding, e.g. Windows-1252); {FIX}"
        ) from None


def _position(data: bytes, index: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte ``index`` of mostly-UTF-8 data."""
    before = data[:index]
    line_start = before.rfind(b"\n") + 1
    column = len(before[line_start:].decode("utf-8", "replace")) + 1
    return before.count(b"\n") + 1, column
