"""nginx ``log_format`` strings → parsers; combined, common and vcombined are defined so.

Three paths, fastest first, each only seeing what the one before could not take:

1. When the format is a row of space-separated fields, each a bare variable, a quoted
   ``"$var"`` or ``[$time_local]`` (combined, common and most custom formats are), a whole
   batch of raw bytes goes through Polars' CSV reader with a space separator. It is several
   times faster than a regex with captures. Rows whose shape is not the format's, lines with
   backslash escapes and lines whose stray quotes derail the CSV reader are handed on. On
   well-formed lines both readings are identical (tested); on lines with misplaced quotes
   the CSV reading can differ (``"1.2.3.4"`` is read as an address), but which reading a
   line gets depends only on the line itself, never on the batch around it.
2. A fast regex (fields cannot contain their delimiter) that the Rust engine runs in one pass.
3. A tolerant regex (escaped quotes, trailing fields missing, extra spaces) for the misses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import polars as pl

from botguard.parsers.normalize import SPLIT_DATE, SPLIT_ZONE, finish, with_line_text
from botguard.sources.files import Chunk

# ``$name`` or ``${name}``; a "}" after a plain ``$name`` is a literal (HAProxy's {agent|referer}).
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")

#: nginx variable → the capture name ``normalize.finish`` understands (None = skip).
_TARGET: dict[str, str | None] = {
    "remote_addr": "remote_addr",
    # Not nginx's: the client address with ":port" after it, as AWS ALB writes it (an IPv6
    # address unbracketed, so the port is whatever follows the last colon).
    "remote_addr_port": "remote_addr_port",
    "realip_remote_addr": "remote_addr",
    "http_x_real_ip": "remote_addr",
    "binary_remote_addr": None,
    "time_local": "time_local",
    "time_iso8601": "time_iso8601",
    "msec": "msec",
    "request": "request",
    "request_method": "request_method",
    "request_uri": "request_uri",
    "uri": "uri",
    "document_uri": "uri",
    "args": "args",
    "query_string": "args",
    "server_protocol": "server_protocol",
    "status": "status",
    "body_bytes_sent": "body_bytes_sent",
    "bytes_sent": "bytes_sent",
    "http_referer": "http_referer",
    "http_user_agent": "http_user_agent",
    "host": "host",
    "http_host": "host",
    "server_name": "host",
    "request_time": "request_time",
    "http_x_forwarded_for": "http_x_forwarded_for",
    # A CDN's own header naming the visitor: a chain of one, believed like X-Forwarded-For
    # only from a trusted proxy (ingest.trusted_proxies: [cloudflare]).
    "http_cf_connecting_ip": "http_x_forwarded_for",
    "http_true_client_ip": "http_x_forwarded_for",
    "http_fastly_client_ip": "http_x_forwarded_for",
    "ssl_ja3": "tls",
    "ssl_ja3_hash": "tls",
    "http_ja3": "tls",
    "http_x_ja3": "tls",
    "ssl_ja4": "tls",
    "http_ja4": "tls",
    "http_x_ja4": "tls",
    "session_id": "session",
    "http_x_session_id": "session",
}

BUILTIN_FORMATS: dict[str, str] = {
    "combined": '$remote_addr $_ident $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"',
    "common": '$remote_addr $_ident $remote_user [$time_local] "$request" $status $body_bytes_sent',
    "vcombined": '$host:$_port $remote_addr $_ident $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"',
    # AWS Application Load Balancer access logs: type time elb client:port target:port
    # request/target/response processing times, ELB and target status, received and sent
    # bytes, "request" "user agent" cipher protocol target-group "trace" "domain" (later
    # fields are ignored; older logs without trace and domain still parse).
    "alb": '$_type $time_iso8601 $_elb $remote_addr_port $_target $_request_t $request_time $_response_t '
           '$status $_target_status $_received $bytes_sent "$request" "$http_user_agent" $_cipher '
           '$_tls $_target_group "$_trace" "$host"',
    # HAProxy `option httplog` through syslog, with the agent and referer captured
    # (`http-request capture req.hdr(User-Agent) len 256` then Referer): its %tr time has
    # milliseconds and no zone (ingest.default_timezone applies).
    "haproxy": '$_mon $_day $_clock $_host $_proc $remote_addr_port [$time_local.$_ms] $_fe $_be $_timers '
               '$status $bytes_sent $_c1 $_c2 $_term $_conns $_queue {$http_user_agent|$http_referer} "$request"',
}


def _target(var: str) -> str | None:
    if var in _TARGET:
        return _TARGET[var]
    if var.startswith("cookie_"):
        return "session"
    return None


@dataclass(frozen=True)
class _Piece:
    literal: str | None = None
    var: str | None = None


def _tokenize(fmt: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    pos = 0
    for m in _VAR.finditer(fmt):
        if m.start() > pos:
            pieces.append(_Piece(literal=fmt[pos : m.start()]))
        pieces.append(_Piece(var=m.group(1) or m.group(2)))
        pos = m.end()
    if pos < len(fmt):
        pieces.append(_Piece(literal=fmt[pos:]))
    return pieces


def _compile(fmt: str, tolerant: bool) -> tuple[str, list[str]]:
    """Regex text and the capture names in group order."""
    pieces = _tokenize(fmt)
    names: list[str] = []
    parts: list[str] = []
    seen: set[str] = set()
    for i, piece in enumerate(pieces):
        if piece.literal is not None:
            lit = piece.literal
            if tolerant:
                parts.append(re.sub(r"(?:\\ )+", " +", re.escape(lit)))
            else:
                parts.append(re.escape(lit))
            continue
        assert piece.var is not None
        nxt = pieces[i + 1].literal if i + 1 < len(pieces) else None
        prev = pieces[i - 1].literal if i > 0 else None
        term = nxt[0] if nxt else None
        quoted = term == '"' and prev is not None and prev.endswith('"')
        if quoted:
            frag = r'(?:[^"\\]|\\.)*' if tolerant else r'[^"]*'
        elif term is None:
            frag = r".*" if tolerant else r"[^ ]*"
        elif term == " ":
            # An unquoted field never starts with a quote: keeps a format with one more
            # bare field from swallowing the next quoted one.
            frag = r'(?:[^ "][^ ]*)?'
        else:
            frag = "[^" + re.escape(term) + "]*"
        target = _target(piece.var)
        if target is not None and target not in seen:
            seen.add(target)
            names.append(target)
            parts.append(f"({frag})")
        else:
            parts.append(f"(?:{frag})")
    if tolerant:
        # Trailing segments may be missing (common lines in a combined log): make everything
        # after the status field optional, one nested group per piece.
        status_idx = next(
            (k for k, p in enumerate(pieces) if p.var == "status"), None
        )
        if status_idx is not None and status_idx + 1 < len(parts):
            head, tail = parts[: status_idx + 1], parts[status_idx + 1 :]
            nested = ""
            for frag in reversed(tail):
                nested = f"(?:{frag}{nested})?"
            parts = [*head, nested]
        body = "".join(parts)
        return "^" + body + r"(?:[ \t].*)?$", names
    return "^" + "".join(parts) + r"(?:[ \t].*)?$", names


@dataclass(frozen=True)
class _CsvColumn:
    """One space-separated field: ``kind`` is bare, quoted, bracketed ("[value]"), time_open ("[date") or time_close
    ("+0000]"); ``target`` the capture name, or None for fields botguard does not keep."""

    kind: str
    target: str | None


@dataclass(frozen=True)
class _CsvPlan:
    columns: tuple[_CsvColumn, ...]

    @cached_property
    def read(self) -> tuple[int, ...]:
        """The fields the CSV reader keeps: those with a target, the zone half of the time,
        and the first (the sentinel check reads it). Skipping the others (combined's ident and
        user) saves a tenth of the read; an empty one still shifts a kept field out of shape."""
        return tuple(
            k for k, col in enumerate(self.columns)
            if k == 0 or col.target is not None or col.kind == "time_close"
        )


def _csv_plan(fmt: str) -> _CsvPlan | None:
    """The CSV reading of ``fmt``, or None when its fields are not simply space-separated."""
    fields: list[list[_Piece]] = [[]]
    for piece in _tokenize(fmt):
        if piece.var is not None:
            fields[-1].append(piece)
            continue
        assert piece.literal is not None
        for k, text in enumerate(piece.literal.split(" ")):
            if k:
                fields.append([])
            if text:
                fields[-1].append(_Piece(literal=text))
    columns: list[_CsvColumn] = []
    seen: set[str] = set()

    def keep(var: str) -> str | None:
        target = _target(var)
        if target is None or target in seen:
            return None
        seen.add(target)
        return target

    for field in fields:
        shape = [p.literal if p.literal is not None else "$" for p in field]
        var = next((p.var for p in field if p.var is not None), None)
        if shape == ["$"] and var not in ("time_local", "request"):
            # Values of these two contain spaces: bare, they would span several fields.
            assert var is not None
            columns.append(_CsvColumn("bare", keep(var)))
        elif shape == ['"', "$", '"']:
            assert var is not None
            columns.append(_CsvColumn("quoted", keep(var)))
        elif shape == ["[", "$", "]"] and var == "time_local":
            target = keep(var)
            columns += [_CsvColumn("time_open", target), _CsvColumn("time_close", None)]
        elif shape == ["[", "$", "]"] and var != "request":
            # ingress-nginx's [$proxy_upstream_name]: one field, brackets stripped after.
            assert var is not None
            columns.append(_CsvColumn("bracketed", keep(var)))
        elif field and all(p.literal is not None and '"' not in p.literal for p in field):
            columns.append(_CsvColumn("bare", None))  # a constant, e.g. "-"
        else:
            return None  # empty field (double space), glued variables, partial quotes …
    return _CsvPlan(tuple(columns))


def _read_fields(data: bytes, plan: _CsvPlan, n_rows: int) -> pl.DataFrame | None:
    """Space-separated fields of every line as columns c0, c1, …; None when the CSV reader
    refuses the chunk or its rows no longer line up with the lines (a quote left open)."""
    schema = {f"c{k}": pl.String for k in range(len(plan.columns))}
    try:
        frame = pl.read_csv(
            data, has_header=False, separator=" ", quote_char='"', schema=schema, columns=list(plan.read),
            truncate_ragged_lines=True, empty_string_is_null=False, raise_if_empty=False,
            missing_columns="insert", extra_columns="ignore",
        )
    except pl.exceptions.PolarsError:
        return None
    return frame if len(frame) == n_rows else None


def _escaped_lines(chunk: Chunk, limit: int = 4096) -> list[int] | None:
    """Positions of the lines of ``chunk`` with a backslash escape (\\" or \\\\), or None when
    there are more than ``limit``, or backslashes of other kinds are many (nginx writes every
    byte of a non-ASCII URL as \\xNN): the chunk then takes the path that reads every line."""
    raw, size = chunk.raw, chunk.size
    found: list[int] = []
    seen = 0
    # Backslashes one at a time: a one-byte search is memchr, a two-byte one five times slower.
    at = raw.find(b"\\", 0, size)
    while at >= 0:
        seen += 1
        if seen > 4 * limit:
            return None
        if raw[at + 1 : at + 2] in (b'"', b"\\"):
            found.append(at)
            if len(found) > limit:
                return None
            at += 1  # the escaped character is not an escape of its own
        at = raw.find(b"\\", at + 1, size)
    lines: list[int] = []
    line = prev = 0
    for at in found:
        line += raw.count(b"\n", prev, at)
        prev = at
        if not lines or lines[-1] != line:
            lines.append(line)
    return lines


def _read_blanked(lines: pl.DataFrame, data: bytes, plan: _CsvPlan) -> tuple[pl.DataFrame, pl.Series] | None:
    """The chunk read again with the lines the regexes take blanked out (kept as rows, so rows
    stay aligned with line numbers): the frame and those lines, or None when the chunk goes to
    the regexes whole.

    The lines whose quotes are not plainly balanced must be read alone to know whether the
    reader can take them (``_regex_only``). They are first read within the chunk, in the read
    that is needed anyway, each followed by a sentinel: when every sentinel comes back as a row
    of its own, each of them was read from a row's start to its own end, as alone, and that one
    read is the frame. Probing them apart cost a chunk with a single escaped quote (whose lines
    are all probed, their closing quotes ending them) a second read of the whole chunk."""
    escaped, unclosed, check = _quote_flags(lines)
    suspect = escaped | unclosed
    n = len(lines)
    if check.any():
        marked = lines.with_columns(suspect.alias("_k"), check.alias("_c"))
        text = pl.when(pl.col("_k")).then(pl.lit(" ")).otherwise(pl.col("line"))
        probe = marked.select(pl.when(pl.col("_c")).then(text + "\nx").otherwise(text).str.join("\n")).item()
        rows = _read_fields((probe + "\n").encode("utf-8"), plan, n + int(check.sum()))
        if rows is not None:
            step = check.cast(pl.Int64)
            at = pl.int_range(n, dtype=pl.Int64, eager=True) + step.cum_sum() - step  # each line's row
            if (rows["c0"].gather(at.filter(check) + 1) == "x").all():
                return rows[at], suspect
        probed = _regex_only(lines, plan, suspect, check)
        if probed is None:
            return None
        suspect = probed
    frame = _read_fields(_blanked(lines, data, suspect), plan, n)
    return None if frame is None else (frame, suspect)


def _blanked(lines: pl.DataFrame, data: bytes, blank: pl.Series) -> bytes:
    """``data`` (the chunk ``lines`` were read from) with the lines of ``blank`` turned to
    spaces, each still a row of its own."""
    if not blank.any():
        return data
    size = lines.select(pl.col("line").str.len_bytes().cast(pl.Int64)).to_series()
    start = (size + 1).cum_sum() - (size + 1)
    buf = bytearray(data)
    for i in blank.arg_true().to_list():
        a, k = start[i], size[i]
        buf[a : a + k] = b" " * k
    return bytes(buf)


def _quote_flags(lines: pl.DataFrame) -> tuple[pl.Series, pl.Series, pl.Series]:
    """Per line: backslash escapes (the regexes undo them); an odd number of quotes; and quotes
    that are neither of those nor plain (every quote opening or closing a whole field, no
    quote inside one), which only a probe can judge. A plain line is well-formed CSV, which
    the reader takes. One with an odd number of quotes leaves one open at its end, and the
    reader's line splitter, which pairs quotes, runs on into the next line: such a line is
    unreadable alone (so in 3,600 random damaged lines), and needs no probe either. Probing
    found each by halving, two reads per halving: 1% of lines with an unclosed agent quote
    made a 0.2M-line log take 13 s to parse instead of 1 s; and probing every line whose last
    field is quoted made a chunk with one escaped quote cost a second read."""
    text = pl.col("line")
    flags = lines.select(
        (text.str.contains('\\"', literal=True) | text.str.contains("\\\\", literal=True)).alias("e"),
        (text.str.contains('"', literal=True) & ~text.str.contains(_PLAIN)).alias("o"),
        (text.str.count_matches('"', literal=True) % 2 == 1).alias("u"),
    )
    escaped = flags.to_series(0)
    odd = flags.to_series(1) & ~escaped
    unclosed = odd & flags.to_series(2)
    return escaped, unclosed, odd & ~unclosed


#: A line of space-separated fields, each bare (no quote) or quoted whole (no quote inside).
_PLAIN = r'^(?:[^" ]+|"[^"]*")(?: (?:[^" ]+|"[^"]*"))*$'


def _regex_only(lines: pl.DataFrame, plan: _CsvPlan, known: pl.Series, check: pl.Series) -> pl.Series | None:
    """Lines the CSV path leaves to the regexes, decided by each line alone, so a line is read
    the same way whatever batch it is in: those ``known`` already (``_quote_flags``: escapes,
    unclosed quotes) and those of ``check`` the CSV reader cannot take alone (probed). None
    when finding those would take more than ``_PROBE_READS`` reads: the chunk then goes to the
    regexes whole (a line the CSV reader takes but the regexes do not is then rejected, as in
    a chunk with invalid UTF-8)."""
    regex_only = known.clone()
    where = check.arg_true()
    try:
        found = _unreadable(lines.to_series(0).filter(check), plan, [_PROBE_READS])
    except _TooManyReads:
        return None
    for i in found:
        regex_only[int(where[i])] = True
    return regex_only


#: Reads ``_unreadable`` may make for one chunk: two unreadable lines among 77,000 take about
#: 70; 1% of them took 12 s of reads per 0.2M lines, where the regexes read the chunk in 0.2 s.
_PROBE_READS = 200


class _TooManyReads(Exception):
    pass


def _unreadable(texts: pl.Series, plan: _CsvPlan, budget: list[int] | None = None) -> list[int]:
    """Positions of the lines the CSV reader cannot take alone: each is read followed by a
    sentinel line, which must come back intact. Checked together, halved on failure; each
    read spends one of ``budget`` (raises ``_TooManyReads`` when none is left). The probe is
    built by Polars: a chunk with one escaped quote probes all its lines (their closing
    quotes end them), and joining 77,000 Python strings took 0.1 s of every such chunk."""
    if texts.is_empty():
        return []
    if budget is not None:
        if budget[0] <= 0:
            raise _TooManyReads
        budget[0] -= 1
    probe = (texts + "\nx\n").str.join("").item().encode("utf-8")
    got = _read_fields(probe, plan, 2 * len(texts))
    if got is not None and (got["c0"].gather_every(2, offset=1) == "x").all():
        return []
    if len(texts) == 1:
        return [0]
    half = len(texts) // 2
    return _unreadable(texts.slice(0, half), plan, budget) + [
        half + i for i in _unreadable(texts.slice(half), plan, budget)
    ]


def _well_formed(frame: pl.DataFrame, plan: _CsvPlan) -> pl.Series:
    """Rows whose fields have the format's shape. Empty fields (missing trailing fields, double
    spaces, ``""``) are left to the regexes, which tell those cases apart."""
    checks: list[pl.Expr] = []
    for k in plan.read:
        col, c = plan.columns[k], pl.col(f"c{k}")
        if col.kind == "time_open":
            checks.append(c.str.starts_with("["))
        elif col.kind == "time_close":
            checks.append(c.str.ends_with("]"))
        elif col.kind == "bracketed":
            checks.append(c.str.starts_with("[") & c.str.ends_with("]"))
        elif col.kind == "quoted":
            # A quote inside a quoted value was written doubled (CSV escaping); the regexes
            # read that differently, so such rows are theirs.
            checks.append((c != "") & ~c.str.contains('"', literal=True))
        else:
            checks.append(c != "")
    return frame.select(pl.all_horizontal(checks).fill_null(False)).to_series()


@dataclass(frozen=True)
class RegexLogParser:
    """A parser for one line-oriented format described by an nginx log_format string."""

    #: Keeps nothing from one chunk to the next: chunks may be parsed side by side.
    stateless: ClassVar[bool] = True

    name: str
    log_format: str

    @property
    def fields(self) -> list[str]:
        return _compile(self.log_format, tolerant=False)[1]

    @cached_property
    def _plan(self) -> _CsvPlan | None:
        return _csv_plan(self.log_format)

    def parse_bytes(self, chunk: Chunk, default_tz: str) -> tuple[pl.DataFrame, pl.DataFrame] | None:
        """Parse a chunk of whole lines straight from bytes, or None when this chunk needs the
        line-by-line path (format not CSV-shaped, CRLF, invalid UTF-8, too many odd lines).

        Same result as ``parse`` on the same lines: rows the CSV reader cannot vouch for are
        parsed by the regexes, and rejected lines keep their verbatim text.
        """
        plan = self._plan
        if plan is None or not chunk.size or chunk.find(b"\r"):
            return None
        source, first_line_no, n_lines = chunk.source, chunk.first_line_no, chunk.n_lines
        lines: pl.DataFrame | None = None
        suspect: pl.Series | None = None
        frame = None
        # One-byte search first: memchr is twenty times faster than a two-byte pattern.
        backslash = chunk.find(b"\\")
        escaped = _escaped_lines(chunk) if backslash and (chunk.find(b'\\"') or chunk.find(b"\\\\")) else []
        if escaped is not None:
            # Rows end only at newlines, and a line that ran on into the next would leave a row
            # fewer: with a row per line, each row is its line, read from a row's start as it
            # would be alone. Lines with escapes (Apache's \" inside an agent) are the regexes'.
            frame = _read_fields(chunk.data, plan, n_lines)
            if frame is not None and escaped:
                suspect = pl.repeat(False, n_lines, eager=True).scatter(escaped, True)
        if frame is None:
            data = chunk.data
            # Escaped or stray quotes somewhere: find the lines that have them, blank them out
            # (keeping the line count, so rows stay aligned with line numbers) and read again.
            try:
                lines = pl.read_lines(data)
            except pl.exceptions.PolarsError:
                return None  # not UTF-8: the caller decodes with replacement
            if len(lines) != n_lines:
                return None
            read = _read_blanked(lines, data, plan)
            if read is None:
                return None  # stray quotes everywhere, or a line the reader still cannot take
            frame, suspect = read
        ok = _well_formed(frame, plan)
        if suspect is not None:
            ok = ok & ~suspect
        line_no = pl.int_range(first_line_no, first_line_no + n_lines, dtype=pl.Int64)
        frame = frame.with_columns(line_no.alias("line_no"), ok.alias("_ok"))
        all_ok = bool(ok.all())
        good = frame if all_ok else frame.filter(pl.col("_ok"))  # a filter copies every string
        exprs: list[pl.Expr] = []
        for k, col in enumerate(plan.columns):
            if col.target is None:
                continue
            if col.kind == "time_open":
                # The halves apart: finish parses the clock and applies the zone per distinct zone.
                exprs += [
                    pl.col(f"c{k}").str.slice(1).alias(SPLIT_DATE),
                    pl.col(f"c{k + 1}").str.strip_suffix("]").alias(SPLIT_ZONE),
                ]
            elif col.kind == "bracketed":
                exprs.append(pl.col(f"c{k}").str.slice(1, pl.col(f"c{k}").str.len_chars() - 2).alias(col.target))
            else:
                exprs.append(pl.col(f"c{k}").alias(col.target))
        raw = good.lazy().select(
            *exprs,
            pl.col("line_no"),
            pl.lit(source).alias("source"),
            pl.lit(None, pl.String).alias("line"),
            pl.lit(True).alias("_matched"),
        )
        hits, rejects = finish(raw, default_tz, escapes=backslash)
        n_rest = len(frame) - len(good)
        if n_rest or len(rejects):
            if lines is None:
                lines = pl.read_lines(chunk.data)
            lines = lines.with_columns(
                line_no.alias("line_no"), pl.lit(source).alias("source")
            )
        if n_rest:
            assert lines is not None
            rest = lines.filter(~frame["_ok"])
            more_hits, more_rejects = self.parse(rest.lazy(), default_tz)
            hits = pl.concat([hits, more_hits]).sort("line_no")
            rejects = pl.concat([rejects, more_rejects])
        if len(rejects):
            assert lines is not None
            rejects = with_line_text(rejects, lines)
        return hits, rejects

    def could_parse(self, lines: pl.DataFrame) -> int:
        """How many of ``lines`` (a ``line`` column) one of the regexes matches: no more can
        become hits, so ``--format auto`` skips parsing a sample this format cannot win."""
        fast, _ = _compile(self.log_format, tolerant=False)
        slow, _ = _compile(self.log_format, tolerant=True)
        line = pl.col("line")
        return int(lines.select((line.str.contains(fast) | line.str.contains(slow)).sum()).item() or 0)

    def parse(self, lines: pl.LazyFrame, default_tz: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        fast, names = _compile(self.log_format, tolerant=False)
        slow, _ = _compile(self.log_format, tolerant=True)
        rename = {str(i): n for i, n in enumerate(names, start=1)}
        # One regex pass for the common case; the tolerant regex only sees the misses.
        first = (
            lines.with_columns(pl.col("line").str.extract_groups(fast).alias("_g"))
            .unnest("_g")
            .rename(rename)
            .with_columns(pl.col(names[0]).is_not_null().alias("_matched"))
            .collect()
        )
        # Apache writes \" and \\ inside quoted fields; unescape them on the (rare) lines that
        # have a backslash at all, so both regex paths give the same text.
        escaped = first.select(pl.col("line").str.contains("\\", literal=True)).to_series()
        if escaped.any():
            idx = escaped.arg_true()
            fixed = first[idx].select([pl.col(n).str.replace_all(r'\\(["\\])', "$1") for n in names])
            first = first.with_columns([first[n].scatter(idx, fixed[n]) for n in names])
        missed = first.filter(~pl.col("_matched"))
        if missed.is_empty():
            return finish(first.lazy(), default_tz)
        retry = (
            missed.lazy()
            .drop([*names, "_matched"])
            .with_columns(pl.col("line").str.extract_groups(slow).alias("_g"))
            .unnest("_g")
            .rename(rename)
            .with_columns(
                pl.col(names[0]).is_not_null().alias("_matched"),
                # Apache escapes quotes inside fields as \" ; undo it.
                *[pl.col(n).str.replace_all(r'\\(["\\])', "$1") for n in names],
            )
        )
        both = pl.concat(
            [first.lazy().filter(pl.col("_matched")), retry], how="diagonal"
        ).sort("line_no")
        return finish(both, default_tz)
