"""Value types used across the config: durations, byte sizes, regexes, networks.

Kept apart from the models so a message for a bad value is the same wherever it appears.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """'30m' -> 1800.0 seconds. Numbers are seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30m', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration like '30m', got {value!r}")


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.I)
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            unit = m.group(2).lower() if m.group(2) else None
            return int(float(m.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"expected a size like '64MiB', got {value!r}")


def check_regex(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a regular expression string, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


def check_network(value: Any) -> str:
    """An address or CIDR, normalized ('10.0.0.1/8' is refused: host bits set)."""
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address or CIDR, got {value!r}")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as exc:
        raise ValueError(f"expected an IP address or CIDR, got {value!r} ({exc})") from None


#: A range source's name (``cloudflare``, ``aws``): lower case, starting with a letter, so it
#: never reads as an address. Which names exist is checked against ``ranges.sources`` later.
SOURCE_NAME = re.compile(r"[a-z][a-z0-9_.-]*")


def check_proxy(value: Any) -> str:
    """A trusted proxy: an address, a CIDR, or the name of a range source whose networks are
    meant (``cloudflare``: its edges change, the published list keeps up with them)."""
    if isinstance(value, str) and SOURCE_NAME.fullmatch(value.strip()):
        return value.strip()
    try:
        return check_network(value)
    except ValueError as exc:
        raise ValueError(f"{exc}; or the name of a range source such as 'cloudflare'") from None


def check_asn(value: Any) -> int:
    if isinstance(value, str) and value.upper().startswith("AS"):
        value = value[2:]
    try:
        asn = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected an AS number like 'AS16509' or 16509, got {value!r}") from None
    if not 0 < asn < 2**32:
        raise ValueError(f"expected an AS number between 1 and 4294967295, got {value!r}")
    return asn


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
Regex = Annotated[str, BeforeValidator(check_regex)]
Network = Annotated[str, BeforeValidator(check_network)]
Proxy = Annotated[str, BeforeValidator(check_proxy)]
ASN = Annotated[int, BeforeValidator(check_asn)]
