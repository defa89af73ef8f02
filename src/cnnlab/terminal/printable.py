"""Text that reaches a terminal, made harmless: control characters (ESC, OSC, BEL, DEL, C1, …)
shown escaped (``\\x1b``) and Unicode bidi controls (U+202E, …) shown as ``\\u202e``, so a run
name or tag cannot set the terminal's title, hide text or reorder a line.

`printable` does it to one string. `install` makes every Rich `Text` do it when it is built (Rich
itself only strips BEL, BS, VT, FF and CR there, and lets ESC through), which covers every table
cell, line and error message printed through Rich, before it is laid out, so columns stay aligned.
Newlines and tabs are kept: Rich lays out multi-line cells with them."""

from __future__ import annotations

import re

import rich.text

# Unicode's explicit bidirectional formatting characters, and the line and paragraph separators.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
_UNSAFE = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}]")
_NAMED = {"\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control and bidi character but newline and tab written out as an escape
    (``\\x1b``, ``\\u202e``, ``\\r``)."""
    return _UNSAFE.sub(_escaped, text)


def _rich_text_sanitizer(text: str, *_: object) -> str:
    return printable(text)


def install() -> None:
    """Make every Rich `Text` built from now on escape control and bidi characters (idempotent)."""
    rich.text.strip_control_codes = _rich_text_sanitizer  # type: ignore[attr-defined]
