"""Published IP ranges of crawlers and clouds: fetch or import, normalize, store, load, look up.

Crawler operators (Google, Bing, Apple, OpenAI, …) and clouds (AWS, GCP, Azure, …) publish the
networks they use, each in its own format. ``botguard ranges update`` turns each source into one
normalized, sorted list in ``data_dir`` (``<name>.txt``) plus ``manifest.json`` saying where and
when it came from, so that analysis runs offline and replays give the same answer.

Safety rules, because these lists decide whether a "Googlebot" is believed:
- every network is validated with :mod:`ipaddress`; garbage is dropped and counted;
- files are written to a temporary name and renamed into place;
- a source that fails (network error, empty or unparseable file) keeps its previous copy.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import ipaddress
import json
import os
import re
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from botguard import __version__
from botguard.atomic import atomic_write
from botguard.config import Config
from botguard.errors import InputError
from botguard.iputil import NetworkIndex

__all__ = [
    "ParsedRanges",
    "RangeSet",
    "SourceStatus",
    "default_fetch",
    "list_ranges",
    "load_ranges",
    "parse_ranges",
    "resolve_data_dir",
    "update_ranges",
]

MANIFEST = "manifest.json"
#: Built lookup indexes, kept under the data folder (``RangeSet._index``); emptied by every
#: update. Files are keyed by the lists' digests, so a stale one is never read.
INDEX_CACHE = "index-cache"
INDEX_FORMAT = 1
ENV_DATA_DIR = "BOTGUARD_DATA"
DEFAULT_TIMEOUT_S = 30.0

Fetch = Callable[[str, float], bytes]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class SourceStatus:
    """One source's state, as reported by ``ranges update`` and ``ranges list``.

    ``status`` is one of: ``updated`` (new copy stored), ``failed`` (previous copy kept; see
    ``message``), ``skipped`` (no URL and no local file), ``not_found`` (``--from`` folder has no
    file for it), ``ok`` (stored copy present), ``missing`` (never stored), ``corrupt`` (stored
    copy does not match its manifest entry).
    """

    name: str
    kind: str
    status: str
    count: int | None = None
    dropped: int = 0
    fetched_at: datetime | None = None
    age: timedelta | None = None
    origin: str | None = None
    format: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class ParsedRanges:
    """Networks parsed from one file: sorted, deduplicated strings plus what was thrown away."""

    networks: list[str]
    dropped: int
    format: str
    #: When the operator published the list, if the file says (Google's ``creationTime``,
    #: AWS's ``createDate``): a list is only evidence about traffic of about its own time.
    published: datetime | None = None


# --------------------------------------------------------------------------- parsing
_KEY_HINT = re.compile(r"prefix|cidr|ip|addr", re.I)
# A value that *tries* to be an address or CIDR; only those count as dropped garbage.
_LOOKS_LIKE_NET = re.compile(r"^[0-9A-Fa-f:.]+(?:/\d+)?$")


def parse_ranges(data: bytes, filename: str = "") -> ParsedRanges:
    """Parse any supported provider format (JSON shapes, CSV, plain lists) into networks.

    The format is recognised from the content, not the name: mirrors rename files freely.
    """
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            doc = json.loads(stripped)
        except json.JSONDecodeError:
            doc = None
        if doc is not None:
            fmt, candidates = _json_candidates(doc)
            return dataclasses.replace(_normalize(candidates, fmt), published=_published(doc))
    return _normalize(_text_candidates(text), "csv" if filename.endswith(".csv") else "text")


def _published(doc: Any) -> datetime | None:
    """The publication time a provider JSON carries, if any."""
    if not isinstance(doc, dict):
        return None
    created = doc.get("creationTime")
    if isinstance(created, str):
        return _parse_ts(created)
    created = doc.get("createDate")  # AWS: 2024-01-09-21-13-06
    if isinstance(created, str):
        try:
            return datetime.strptime(created, "%Y-%m-%d-%H-%M-%S").replace(tzinfo=UTC)
        except ValueError:
            return None
    return None


def _json_candidates(doc: Any) -> tuple[str, list[str]]:
    """(format name, candidate strings) for the known shapes, else a lenient recursive walk."""
    if isinstance(doc, list):
        return "json-list", [v for v in doc if isinstance(v, str)]
    if not isinstance(doc, dict):
        return "json", []
    prefixes = doc.get("prefixes")
    if isinstance(prefixes, list) and prefixes and isinstance(prefixes[0], dict):
        # Google, Bing, Apple, DuckDuckGo, OpenAI, Perplexity, GCP: ipv4Prefix/ipv6Prefix.
        # AWS: prefixes[].ip_prefix and ipv6_prefixes[].ipv6_prefix.
        keys = ("ipv4Prefix", "ipv6Prefix", "ip_prefix", "ipv6_prefix")
        rows = prefixes + list(doc.get("ipv6_prefixes") or [])
        fmt = "aws" if "ip_prefix" in prefixes[0] else "google"
        return fmt, [r[k] for r in rows if isinstance(r, dict) for k in keys if k in r]
    if isinstance(doc.get("regions"), list):
        cidrs = [c.get("cidr") for r in doc["regions"] for c in (r.get("cidrs") or [])]
        return "oracle", [c for c in cidrs if isinstance(c, str)]
    if isinstance(doc.get("values"), list):
        out: list[Any] = []
        for value in doc["values"]:
            out.extend((value.get("properties") or {}).get("addressPrefixes") or [])
        return "azure", out
    if "IPv4Prefixes" in doc or "IPv6Prefixes" in doc:
        return "mirror", list(doc.get("IPv4Prefixes") or []) + list(doc.get("IPv6Prefixes") or [])
    return "json", list(_walk(doc, hinted=False))


def _walk(node: Any, hinted: bool) -> Iterator[str]:
    """Strings under keys whose name suggests addresses (prefix, cidr, ip, addr), at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, hinted or bool(_KEY_HINT.search(str(key))))
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, hinted)
    elif isinstance(node, str) and hinted:
        yield node


def _text_candidates(text: str) -> Iterator[str]:
    """Plain lists and CSV: the first field of each line; 'start,end' address pairs are ranges."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith(";"):
            continue
        if "," in line:
            fields = next(csv.reader(io.StringIO(line)))
            first = fields[0].strip()
            second = fields[1].strip() if len(fields) > 1 else ""
            span = _address_range(first, second)
            if span is not None:
                yield from span
                continue
            yield first
        else:
            yield line.split()[0]


def _address_range(first: str, second: str) -> list[str] | None:
    # ipcat-style 'first address,last address,...' rows.
    if "/" in first or "/" in second or not second:
        return None
    try:
        lo, hi = ipaddress.ip_address(first), ipaddress.ip_address(second)
        nets = ipaddress.summarize_address_range(lo, hi)  # type: ignore[type-var]
        return [str(n) for n in nets]
    except (ValueError, TypeError):
        return None


def _normalize(candidates: Sequence[str] | Iterator[str], fmt: str) -> ParsedRanges:
    nets: set[Network] = set()
    dropped = 0
    for value in candidates:
        if not isinstance(value, str):
            dropped += 1
            continue
        value = value.strip()
        try:
            nets.add(ipaddress.ip_network(value, strict=False))
        except ValueError:
            # In the lenient JSON walk, strings like 'eu-west-1' are not attempts at addresses.
            if fmt != "json" or _LOOKS_LIKE_NET.match(value):
                dropped += 1
    ordered = sorted(nets, key=lambda n: (n.version, int(n.network_address), n.prefixlen))
    return ParsedRanges([str(n) for n in ordered], dropped, fmt)


# --------------------------------------------------------------------------- storage
def resolve_data_dir(cfg: Config, data_dir: Path | str | None = None) -> Path:
    """Explicit argument, else $BOTGUARD_DATA, else ``ranges.data_dir`` (``~`` expanded)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    chosen = os.environ.get(ENV_DATA_DIR) or cfg.ranges.data_dir
    return Path(chosen).expanduser()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def _read_manifest(data_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads((data_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    sources = doc.get("sources") if isinstance(doc, dict) else None
    return sources if isinstance(sources, dict) else {}


def _write_manifest(data_dir: Path, sources: dict[str, dict[str, Any]]) -> None:
    doc = {"generator": "botguard ranges update", "version": 1, "sources": sources}
    payload = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    _atomic_write(data_dir / MANIFEST, payload.encode())


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _store(
    data_dir: Path, name: str, kind: str, origin: str, parsed: ParsedRanges, fetched_at: datetime
) -> dict[str, Any]:
    header = (
        f"# botguard ranges: {name} ({kind}), {len(parsed.networks)} networks\n"
        f"# from {origin}\n# fetched {_iso(fetched_at)}\n"
    )
    payload = (header + "".join(n + "\n" for n in parsed.networks)).encode()
    _atomic_write(data_dir / f"{name}.txt", payload)
    return {
        "name": name,
        "kind": kind,
        "origin": origin,
        "fetched_at": _iso(fetched_at),
        "published_at": _iso(parsed.published) if parsed.published else None,
        "count": len(parsed.networks),
        "dropped": parsed.dropped,
        "format": parsed.format,
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


# --------------------------------------------------------------------------- update
def default_fetch(url: str, timeout: float) -> bytes:
    """GET ``url`` with urllib. Some operators refuse requests without a User-Agent."""
    from botguard import __version__

    request = urllib.request.Request(url, headers={"User-Agent": f"botguard/{__version__}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: bytes = response.read()
    return body


def _files_by_name(root: Path, names: set[str]) -> dict[str, list[Path]]:
    """Every file below ``root`` whose name is one of ``names`` (one walk for all sources)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.name in names and path.is_file():
            found.setdefault(path.name, []).append(path)
    return found


def update_ranges(
    cfg: Config,
    *,
    from_dir: Path | None = None,
    data_dir: Path | None = None,
    fetch: Fetch = default_fetch,
    as_of: datetime | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    only: Sequence[str] | None = None,
) -> list[SourceStatus]:
    """Refresh every configured source (or those named in ``only``) into ``data_dir``.

    With ``from_dir``, each source's ``files`` are looked up by name anywhere below it and all
    copies found are merged (mirrors hold the same list under different names). Otherwise each
    source's URL is downloaded. ``as_of`` stamps ``fetched_at`` (default: now).
    """
    known = [s.name for s in cfg.ranges.sources]
    unknown = [name for name in only or () if name not in known]
    if unknown:
        raise InputError(f"unknown range source {', '.join(map(repr, unknown))}",
                         hint=f"known sources: {', '.join(known)}")
    root = Path(from_dir).expanduser() if from_dir is not None else None
    if root is not None and not root.is_dir():
        raise InputError(f"{root}: not a folder", hint="give --from a folder holding range files")
    target = resolve_data_dir(cfg, data_dir)
    target.mkdir(parents=True, exist_ok=True)
    stamp = as_of or datetime.now(UTC)
    manifest = _read_manifest(target)
    sources = [s for s in cfg.ranges.sources if only is None or s.name in only]
    local = _files_by_name(root, {f for s in sources for f in s.files}) if root else {}
    statuses = []
    for source in sources:
        previous = manifest.get(source.name)
        if root is not None:
            # In the order the config lists the names, then by path: deterministic origins.
            paths = [p for name in source.files for p in local.get(name, [])]
            if not paths:
                statuses.append(_kept(source.name, source.kind, "not_found", previous, stamp,
                                      f"no file named {', '.join(source.files)} under {root}"))
                continue
            parts = [parse_ranges(p.read_bytes(), p.name) for p in paths]
            origin = ", ".join(str(p.resolve()) for p in paths)
        elif not source.urls:
            statuses.append(_kept(source.name, source.kind, "skipped", previous, stamp,
                                  "no URL; import a copy with `botguard ranges update --from DIR`"))
            continue
        else:
            try:
                # All of a source's lists or none: half of them would pass for the whole.
                parts = [parse_ranges(fetch(url, timeout), url.rsplit("/", 1)[-1]) for url in source.urls]
            except Exception as exc:  # any network failure keeps the previous copy
                statuses.append(_kept(source.name, source.kind, "failed", previous, stamp,
                                      f"download failed: {exc}"))
                continue
            origin = ", ".join(source.urls)
        merged = _merge_parsed(parts)
        if not merged.networks:
            statuses.append(_kept(source.name, source.kind, "failed", previous, stamp,
                                  f"no valid networks in {origin} ({merged.dropped} dropped)"))
            continue
        entry = _store(target, source.name, source.kind, origin, merged, stamp)
        manifest[source.name] = entry
        # Written after each source so a crash never leaves a list without its manifest entry.
        _write_manifest(target, manifest)
        statuses.append(SourceStatus(
            name=source.name, kind=source.kind, status="updated", count=entry["count"],
            dropped=merged.dropped, fetched_at=stamp, age=timedelta(0), origin=origin,
            format=merged.format,
        ))
    if any(s.status == "updated" for s in statuses):
        # Indexes of the replaced lists would never be read again (their digests are gone).
        for stale in (target / INDEX_CACHE).glob("*.npz"):
            with contextlib.suppress(OSError):
                stale.unlink()
    return statuses


def _merge_parsed(parts: list[ParsedRanges]) -> ParsedRanges:
    if len(parts) == 1:
        return parts[0]
    merged = _normalize([n for p in parts for n in p.networks], "merged")
    stamps = [p.published for p in parts if p.published is not None]
    return ParsedRanges(
        merged.networks, sum(p.dropped for p in parts), "+".join(sorted({p.format for p in parts})),
        max(stamps) if stamps else None,
    )


def _kept(
    name: str, kind: str, status: str, previous: dict[str, Any] | None, now: datetime, message: str
) -> SourceStatus:
    fetched = _parse_ts(previous.get("fetched_at")) if previous else None
    if previous:
        message += f"; kept the copy from {previous.get('fetched_at')}"
    return SourceStatus(
        name=name, kind=kind, status=status,
        count=previous.get("count") if previous else None,
        fetched_at=fetched, age=(now - fetched) if fetched else None,
        origin=previous.get("origin") if previous else None, message=message,
    )


# --------------------------------------------------------------------------- list / load
def list_ranges(
    cfg: Config, data_dir: Path | None = None, *, as_of: datetime | None = None
) -> list[SourceStatus]:
    """What is stored for each configured source, with its age at ``as_of`` (default: now)."""
    target = resolve_data_dir(cfg, data_dir)
    manifest = _read_manifest(target)
    now = as_of or datetime.now(UTC)
    out = []
    for source in cfg.ranges.sources:
        entry = manifest.get(source.name)
        if entry is None:
            out.append(SourceStatus(source.name, source.kind, "missing"))
            continue
        fetched = _parse_ts(entry.get("fetched_at"))
        problem = _check_stored(target, source.name, entry)
        out.append(SourceStatus(
            name=source.name, kind=source.kind, status="corrupt" if problem else "ok",
            count=entry.get("count"), dropped=int(entry.get("dropped") or 0),
            fetched_at=fetched, age=(now - fetched) if fetched else None,
            origin=entry.get("origin"), format=entry.get("format"), message=problem,
        ))
    return out


def _check_stored(data_dir: Path, name: str, entry: dict[str, Any]) -> str | None:
    return _read_checked(data_dir, name, entry)[1]


def _read_checked(
    data_dir: Path, name: str, entry: dict[str, Any]
) -> tuple[list[str] | None, str | None]:
    """(networks, None) when ``<name>.txt`` is intact, else (None, what is wrong)."""
    path = data_dir / f"{name}.txt"
    try:
        payload = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    if hashlib.sha256(payload).hexdigest() != entry.get("sha256"):
        return None, (
            f"{path} does not match manifest.json (edited by hand?); run `botguard ranges update`"
        )
    lines = payload.decode("utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")], None


@dataclass
class RangeSet:
    """Loaded range lists by source name, with vectorized "which source contains this ip".

    Build with :func:`load_ranges`, or directly (tests): ``RangeSet({"googlebot": [...]})``.
    """

    networks: dict[str, list[str]]
    kinds: dict[str, str] = field(default_factory=dict)
    fetched_at: dict[str, datetime] = field(default_factory=dict)
    published_at: dict[str, datetime] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: sha256 of each stored list (its manifest entry) and where built indexes are cached:
    #: set by ``load_ranges``; without them every index is built in memory.
    digests: dict[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    _indexes: dict[tuple[str, ...], NetworkIndex] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        return list(self.networks)

    def loaded(self, name: str) -> bool:
        """True when ``name`` was loaded with at least one network."""
        return bool(self.networks.get(name))

    def names_of_kind(self, *kinds: str) -> list[str]:
        return [n for n in self.networks if self.kinds.get(n) in kinds and self.loaded(n)]

    def lookup(self, ips: pl.Series, names: Sequence[str] | None = None) -> pl.Series:
        """Per row, the first of ``names`` (default: all, in load order) containing the ip.

        Names that are not loaded are ignored; null where none contains it or the value is not
        an address. The index for each distinct ``names`` is built once and kept.
        """
        chosen = tuple(n for n in (names if names is not None else self.networks) if self.loaded(n))
        if not chosen:
            return pl.Series(ips.name, [None] * len(ips), dtype=pl.String)
        index = self._indexes.get(chosen)
        if index is None:
            index = self._indexes[chosen] = self._index(chosen)
        labels = index.lookup(ips)
        return pl.Series("name", chosen, dtype=pl.String).gather(labels).alias(ips.name)

    def _index(self, chosen: tuple[str, ...]) -> NetworkIndex:
        """The index of ``chosen``, from the cache when it holds one built from these very
        lists. Building one parses every network of the lists (0.1 s for the ~80,000 of the
        default sources, on every run, a twentieth of a cron run's budget); reading it back
        takes a millisecond. A cache file that cannot be read or written is passed over."""
        path = None
        if self.cache_dir is not None and all(n in self.digests for n in chosen):
            key = json.dumps([INDEX_FORMAT, __version__, [(n, self.digests[n]) for n in chosen]])
            path = self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"
            try:
                with open(path, "rb") as fh:
                    stored = np.load(fh, allow_pickle=False)
                    if not isinstance(stored, Mapping):
                        raise ValueError("not an .npz archive")
                    arrays = {k: stored[k] for k in stored}
                return NetworkIndex.from_arrays(arrays)
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                pass  # not built yet, or damaged: built again below
        index = NetworkIndex.build([self.networks[n] for n in chosen])
        if path is not None:
            buf = io.BytesIO()
            built: dict[str, Any] = dict(index.to_arrays())  # savez's keywords are typed as its own flags
            np.savez(buf, **built)
            with contextlib.suppress(OSError):  # a read-only data folder: no cache, same result
                _atomic_write(path, buf.getvalue())
        return index


def load_ranges(cfg: Config, data_dir: Path | None = None) -> RangeSet:
    """Load every configured source stored in ``data_dir``, in config order.

    A missing directory gives an empty set (nothing has been updated yet). A list that does not
    match its manifest entry is skipped and reported in ``RangeSet.problems``: a half-written
    or hand-edited file must not silently decide which crawlers are believed.
    """
    target = resolve_data_dir(cfg, data_dir)
    manifest = _read_manifest(target)
    out = RangeSet({}, cache_dir=target / INDEX_CACHE)
    for source in cfg.ranges.sources:
        entry = manifest.get(source.name)
        if entry is None:
            continue
        networks, problem = _read_checked(target, source.name, entry)
        if networks is None:
            out.problems.append(f"{source.name}: {problem}")
            continue
        out.networks[source.name] = networks
        out.kinds[source.name] = source.kind
        out.digests[source.name] = str(entry.get("sha256"))
        fetched = _parse_ts(entry.get("fetched_at"))
        if fetched:
            out.fetched_at[source.name] = fetched
        published = _parse_ts(entry.get("published_at"))
        if published:
            out.published_at[source.name] = published
    return out
