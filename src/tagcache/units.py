"""Sizes and addresses as users write them, one rule everywhere (scenario keys and options).

* A **size** with a unit counts bytes: ``4096B``, ``64KiB``, ``128 MiB``, ``4GiB``, ``1.5G``,
  ``0x1000 B``; binary multiples, as the kernel's memparse() (``K``, ``KB``, ``KiB``: 1024).
* A size **without a unit** (a TOML integer, or a string of decimal or ``0x`` hex digits)
  counts 4 KiB pages: ``16``, ``"16"`` and ``"0x10"`` are all 64 KiB.
* An **address** (the base of a devicetree ``[base, size]`` pair) is a byte address, as the
  devicetree writes it: ``"0x80000000"``; a unit is allowed (``"2GiB"``).

A hex number ending in ``b`` with no space before the end (``"0x100b"``: a digit, or bytes?)
is refused as ambiguous.
"""

from __future__ import annotations

import re
from fractions import Fraction

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_BYTES = 1 << 64
"""Largest size or address accepted (exclusive): beyond 64 bits nothing is meaningful."""

_SUFFIX = {
    "b": 1,
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
    "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}
_SIZE_RE = re.compile(r"^\s*(0x[0-9a-f]{1,20}|\d{1,24}(?:\.\d{1,12})?)\s*([a-z]*)\s*$",
                      re.IGNORECASE)
EXAMPLES = "e.g. 64MiB, 4096B, or a page count such as 16"


def _parse(value: object, plain: int, what: str) -> int:
    """Bytes from ``value``; a number without a unit is multiplied by ``plain``."""
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what} must not be negative")
        out = value * plain
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m or m.group(2).lower() not in ("", *_SUFFIX):
            raise ValueError(f"not {what} ({EXAMPLES})")
        num, suffix = m.group(1), m.group(2).lower()
        if num[:2].lower() == "0x" and num[-1] in "bB" and not suffix:
            raise ValueError(f"ambiguous: is the last B a hex digit or bytes? write "
                             f"{num[:-1]} B for bytes")
        base = int(num, 16) if num.lower().startswith("0x") else Fraction(num)
        if not suffix and Fraction(base).denominator != 1:
            raise ValueError(f"a number without a unit counts {'pages' if plain > 1 else 'bytes'}"
                             f" and must be whole")
        exact = Fraction(base) * (_SUFFIX[suffix] if suffix else plain)
        if exact.denominator != 1:
            raise ValueError("not a whole number of bytes")
        out = int(exact)
    else:
        kind = "a number" if isinstance(value, float) else type(value).__name__
        raise ValueError(f"expected {what}, got {kind} ({EXAMPLES})")
    if out >= MAX_BYTES:
        raise ValueError(f"{what} too large (at most 64 bits of bytes)")
    return out


def parse_size(value: object) -> int:
    """Bytes from a size: a unit counts bytes, a plain number counts 4 KiB pages.

    ValueError (a short reason, without the value) if ``value`` is not a size.
    """
    return _parse(value, PAGE_SIZE, "a size")


def parse_pages(value: object) -> int:
    """Pages from a size (see :func:`parse_size`); ValueError unless a whole number of pages."""
    b = parse_size(value)
    if b % PAGE_SIZE:
        raise ValueError("not a whole number of 4 KiB pages")
    return b // PAGE_SIZE


def parse_address(value: object) -> int:
    """A byte address, as the devicetree writes it (``"0x80000000"``, or with a unit)."""
    return _parse(value, 1, "an address")


def format_bytes(n: float) -> str:
    """Short human form of a byte count: ``128 MiB``."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if abs(n) >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{int(n)} B"
