"""Sizes and addresses as users write them: ``4GiB``, ``128 MiB``, ``0x80000000``, ``4096``."""

from __future__ import annotations

import re

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

_SUFFIX = {
    "": 1, "b": 1,
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
    "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}
_SIZE_RE = re.compile(r"^\s*(0x[0-9a-f]+|\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def parse_size(value: int | str) -> int:
    """Return a byte count from an int or a string such as ``"4GiB"``; ValueError if neither.

    Binary multiples throughout (``1G`` is 2**30), as the kernel's memparse() does.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative: {value}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a size, got {value!r}")
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _SUFFIX:
        raise ValueError(f"not a size: {value!r} (examples: 4096, 0x1000, 64MiB, 4GiB)")
    num, suffix = m.group(1), m.group(2).lower()
    base = int(num, 16) if num.lower().startswith("0x") else float(num)
    out = base * _SUFFIX[suffix]
    if out != int(out):
        raise ValueError(f"size is not a whole number of bytes: {value!r}")
    return int(out)


def format_bytes(n: float) -> str:
    """Short human form of a byte count: ``128 MiB``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if abs(n) >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{int(n)} B"
