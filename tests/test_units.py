"""The value parsers every command shares (tlssniff/units.py): what is taken, what is refused."""

from __future__ import annotations

import pytest

from tlssniff.errors import UsageError
from tlssniff.units import BadValue, format_size, parse_duration, parse_rate, parse_size


@pytest.mark.parametrize("text,want", [
    ("80%", 0.8), ("0.8", 0.8), ("1", 1.0), ("0", 0.0), ("100%", 1.0), ("0%", 0.0),
    (" 12.5% ", 0.125), (".5", 0.5), (0.25, 0.25), (1, 1.0),
])
def test_rates_taken(text, want):
    assert parse_rate(text) == pytest.approx(want)


@pytest.mark.parametrize("text", ["2", "80", "1.5", "150%", "100.1%", "-1", "-5%", "nan", "inf",
                                  "", "%", "eighty", "0.8.1", 2, 1.5])
def test_rates_refused(text):
    with pytest.raises(BadValue):
        parse_rate(text)


@pytest.mark.parametrize("text,want", [
    ("64M", 64 << 20), ("1G", 1 << 30), ("256K", 256 << 10), ("256k", 256 << 10),
    ("1.5G", 3 << 29), ("4096", 4096), ("64MB", 64 << 20), ("64MiB", 64 << 20), ("0", 0),
    (4096, 4096),
])
def test_sizes_taken(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize("text", ["-1", "lots", "64X", "M", "", "1e9", -1])
def test_sizes_refused(text):
    with pytest.raises(BadValue):
        parse_size(text)


@pytest.mark.parametrize("text,want", [("300", 300.0), ("90s", 90.0), ("5m", 300.0),
                                       ("1.5h", 5400.0), (2.5, 2.5)])
def test_durations(text, want):
    assert parse_duration(text) == want


@pytest.mark.parametrize("text", ["-3", "soon", "5d", "", "inf", float("nan")])
def test_durations_refused(text):
    with pytest.raises(BadValue):
        parse_duration(text)


def test_sizes_print_as_they_are_typed():
    for n in (96 << 20, 256 << 10, 1 << 30, 1000, 1536):
        assert parse_size(format_size(n)) == n
    assert format_size(96 << 20) == "96M" and format_size(1536) == "1536"


def test_a_bad_value_is_a_usage_error_and_a_value_error():
    """click words a ValueError as 'Invalid value for --OPTION'; called directly, exit 2."""
    err = BadValue("x")
    assert isinstance(err, UsageError) and isinstance(err, ValueError) and err.exit_code == 2
