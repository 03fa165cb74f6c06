"""The values people type: rates, sizes, durations. One parser each, shared by every command.

Each parser takes the text (or an already converted number: click hands defaults in as they
are) and returns the value, or raises :class:`BadValue`. ``BadValue`` is both a
:class:`~tlssniff.errors.UsageError` (exit status 2 when called directly) and a ``ValueError``,
which click turns into "Invalid value for '--OPTION': ..." when the parser is an option's type.

Rates (``--fail-under``): ``80%`` or ``0.8``. A bare number is a fraction from 0 to 1, so ``1``
is 100% and ``0`` is 0%; ``2``, ``80`` or ``1.5`` are refused as ambiguous (write ``80%``).
Percentages go from 0% to 100%.

Sizes: bytes, or a number with K, M, G or T (powers of 1024; ``KB``/``KiB`` alike): ``64M``,
``1G``, ``256K``, ``1.5G``.

Durations: seconds, or a number with s, m or h: ``300``, ``90s``, ``5m``, ``1.5h``.
"""

from __future__ import annotations

import math
import re

from tlssniff.errors import UsageError


class BadValue(UsageError, ValueError):
    """A value that does not parse; the message says what was expected."""


_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smh]?)\s*", re.IGNORECASE)
_DURATION_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str | float) -> float:
    """``"80%"`` -> 0.8, ``"0.8"`` -> 0.8, ``"1"`` -> 1.0; ``"2"``, ``"1.5"``, ``"150%"`` refused."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, percent = float(text), False
    else:
        s = str(text).strip()
        percent = s.endswith("%")
        try:
            value = float(s[:-1] if percent else s)
        except ValueError:
            raise BadValue(f"{text!r} is not a rate: write 80% or 0.8") from None
    if not math.isfinite(value) or value < 0:
        raise BadValue(f"{text!r} is not a rate: write 80% or 0.8")
    if percent:
        if value > 100:
            raise BadValue(f"{text!r} is above 100%")
        return value / 100
    if value > 1:
        raise BadValue(f"{text!r} is ambiguous: a bare number is a fraction from 0 to 1 "
                       f"(0.8); write a percentage with % (80%)")
    return value


def parse_size(text: str | int) -> int:
    """``"64M"`` -> 67108864, ``"1G"``, ``"256K"``, ``"4096"``; negative or unitless junk refused."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise BadValue(f"{text} is negative")
        return text
    m = _SIZE.fullmatch(str(text))
    if m is None:
        raise BadValue(f"{text!r} is not a size: write bytes or a number with K, M or G (64M)")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def parse_duration(text: str | float) -> float:
    """``"300"`` -> 300.0, ``"90s"``, ``"5m"`` -> 300.0, ``"1.5h"``; negative or junk refused."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        if not math.isfinite(value) or value < 0:
            raise BadValue(f"{text} is not a duration in seconds")
        return value
    m = _DURATION.fullmatch(str(text))
    if m is None:
        raise BadValue(f"{text!r} is not a duration: write seconds or a number with s, m or h")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]


def format_size(n: int) -> str:
    """The shortest exact spelling of ``n`` bytes that :func:`parse_size` reads back: ``96M``."""
    for unit in ("T", "G", "M", "K"):
        step = _SIZE_UNITS[unit.lower()]
        if n >= step and n % step == 0:
            return f"{n // step}{unit}"
    return str(n)
