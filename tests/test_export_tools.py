"""Load every export into the real tool that consumes it, where the tool is installed.

Each check also feeds the tool a deliberately broken file first, so a pass means the tool
really parsed our file (not that it ignored it). Kernel-side loads (ipset, a real nft/iptables
load) run inside a throwaway network namespace (``unshare -n``) so the host's firewall is never
touched; when that is not possible the test skips and says why.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from botguard.schema import BLOCK_ENTRIES_SCHEMA
from botguard.sinks.export import RenderResult, write_export

AS_OF = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _entries() -> pl.DataFrame:
    """A few hundred entries: hosts, networks, both families, overlaps, duplicates, junk."""
    values = [
        *(f"198.51.{i // 256}.{i % 256}" for i in range(0, 600, 3)),
        *(f"2001:db8:{i:x}::{i:x}" for i in range(1, 120)),
        "203.0.113.0/24",
        "203.0.113.77",
        "192.0.2.0/25",
        "192.0.2.128/25",
        "2001:db8:ffff::/48",
        "2001:db8:ffff:1::/64",
        "10.0.0.0/8",
        "10.1.2.3",
        "1.2.3.4; }",
        "evil\ninclude /etc/passwd",
        "999.1.1.1",
    ]
    n = len(values)
    return pl.DataFrame(
        {
            "entry": values,
            "action": ["block"] * n,
            "score": [0.5 + (i % 50) / 100 for i in range(n)],
            "reasons": [["rate_high", 'quote" and ; {brace}']] * n,
            "clients": [1 + i % 7 for i in range(n)],
            "first_seen": [AS_OF] * n,
            "last_seen": [AS_OF] * n,
            "expires": [None] * n,
        },
        schema=BLOCK_ENTRIES_SCHEMA,
    )


ENTRIES = _entries()
EMPTY = pl.DataFrame(schema=BLOCK_ENTRIES_SCHEMA)


def run(cmd: Sequence[str | Path], stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def need(tool: str) -> str:
    path = shutil.which(tool) or next(
        (p for d in ("/usr/sbin", "/sbin") if os.access(p := f"{d}/{tool}", os.X_OK)), None
    )
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package in .ci/run)")
    return path


def need_root(tool: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{tool} needs root (CAP_NET_ADMIN) to check rules")


@functools.cache
def netns_available() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return False
    return run([unshare, "-n", "true"]).returncode == 0


def in_netns(cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command in a fresh, empty network namespace (kernel state thrown away)."""
    if not netns_available():
        pytest.skip("cannot create a network namespace (unshare -n): not root or not permitted")
    return run(["unshare", "-n", "sh", "-ec", cmd])


def kernel_refused(proc: subprocess.CompletedProcess[str]) -> bool:
    err = (proc.stderr + proc.stdout).lower()
    return any(
        s in err
        for s in (
            "netlink",
            "operation not permitted",
            "permission denied",
            "protocol not supported",
            "kernel module",
            "cannot open",
            "could not fetch rule set",
        )
    )


def write(
    tmp_path: Path, name: str, frame: pl.DataFrame = ENTRIES, suffix: str = ""
) -> RenderResult:
    return write_export(frame, name, tmp_path / f"{name}{suffix}", generated_at=AS_OF)


# --------------------------------------------------------------------------- nginx
NGINX_CONF = """\
worker_processes 1;
pid {d}/nginx.pid;
events {{ worker_connections 16; }}
http {{
    access_log off;
    include {geo};
    server {{
        listen 127.0.0.1:18080;
        include {deny};
        location / {{
            if ($botguard_block) {{ return 403; }}
            return 204;
        }}
    }}
}}
"""


def nginx_test(d: Path, deny: Path, geo: Path) -> subprocess.CompletedProcess[str]:
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=d, deny=deny, geo=geo))
    return run([need("nginx"), "-t", "-q", "-p", d, "-e", d / "error.log", "-c", conf])


@pytest.mark.parametrize("frame", [ENTRIES, EMPTY], ids=["entries", "empty"])
def test_nginx_loads_deny_and_geo(tmp_path: Path, frame: pl.DataFrame) -> None:
    deny = write(tmp_path, "nginx-deny", frame, ".conf").paths[0]
    geo = write(tmp_path, "nginx-geo", frame, ".conf").paths[0]
    broken = tmp_path / "broken.conf"
    broken.write_text("deny 1.2.3.4; }\n")
    assert nginx_test(tmp_path, broken, geo).returncode != 0, "nginx did not read the include"
    proc = nginx_test(tmp_path, deny, geo)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- haproxy
HAPROXY_CFG = """\
global
    log stdout format raw local0
defaults
    mode http
    timeout connect 1s
    timeout client 1s
    timeout server 1s
frontend web
    bind 127.0.0.1:18081
    acl botguard_block src -f {acl}
    http-request deny if botguard_block
    default_backend app
backend app
    server app1 127.0.0.1:18082
"""


def haproxy_check(d: Path, acl: Path) -> subprocess.CompletedProcess[str]:
    cfg = d / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(acl=acl))
    return run([need("haproxy"), "-c", "-f", cfg])


@pytest.mark.parametrize("frame", [ENTRIES, EMPTY], ids=["entries", "empty"])
def test_haproxy_loads_acl_file(tmp_path: Path, frame: pl.DataFrame) -> None:
    acl = write(tmp_path, "haproxy", frame, ".acl").paths[0]
    broken = tmp_path / "broken.acl"
    broken.write_text("not-an-address\n")
    assert haproxy_check(tmp_path, broken).returncode != 0, "haproxy did not read the ACL file"
    proc = haproxy_check(tmp_path, acl)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------- apache
def test_apache_loads_require_rules(tmp_path: Path) -> None:
    httpd = shutil.which("apache2") or shutil.which("httpd")
    if httpd is None:
        pytest.skip("apache2/httpd is not installed (not in .ci/run)")
    rules = write(tmp_path, "apache", suffix=".conf").paths[0]
    modules = Path("/usr/lib/apache2/modules")
    conf = tmp_path / "httpd.conf"
    conf.write_text(
        f"ServerRoot {tmp_path}\nPidFile {tmp_path}/httpd.pid\nListen 127.0.0.1:18083\n"
        f"ErrorLog {tmp_path}/error.log\n"
        + "".join(
            f"LoadModule {m}_module {modules}/mod_{m}.so\n"
            for m in ("mpm_event", "authz_core", "authz_host", "authn_core")
            if (modules / f"mod_{m}.so").exists()
        )
        + f'<Location "/">\n    Include {rules}\n</Location>\n'
    )
    proc = run([httpd, "-t", "-f", conf])
    if "Invalid command" in proc.stderr and "Require" in proc.stderr:
        pytest.skip("this httpd build lacks mod_authz_core")
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------- nftables
@pytest.mark.parametrize("frame", [ENTRIES, EMPTY], ids=["entries", "empty"])
def test_nft_checks_ruleset(tmp_path: Path, frame: pl.DataFrame) -> None:
    nft = need("nft")
    need_root("nft")
    path = write(tmp_path, "nftables", frame, ".nft").paths[0]
    overlapping = tmp_path / "overlap.nft"
    overlapping.write_text(
        "table inet t {\n set s { type ipv4_addr; flags interval; "
        "elements = { 10.0.0.0/8, 10.1.0.0/16 } }\n}\n"
    )
    proc = run([nft, "-c", "-f", path])
    if proc.returncode != 0 and kernel_refused(proc):
        pytest.skip(f"kernel refused nft check mode here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    assert run([nft, "-c", "-f", overlapping]).returncode != 0, "nft -c did not validate sets"


def test_nft_real_load_replaces_table(tmp_path: Path) -> None:
    need("nft")
    first = write(tmp_path, "nftables", suffix=".nft").paths[0]
    second = write_export(ENTRIES.head(5), "nftables", tmp_path / "second.nft", generated_at=AS_OF)
    proc = in_netns(
        f"nft -f {first}; nft -f {first}; nft -f {second.paths[0]}; "
        "nft list set inet botguard blocklist_v4; nft list table inet botguard"
    )
    if proc.returncode != 0 and kernel_refused(proc):
        pytest.skip(f"kernel refused nft in a namespace: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    # The reload replaced the set (5 entries now), it did not add to it.
    assert "198.51.0.0" in proc.stdout and "198.51.0.15" not in proc.stdout
    assert proc.stdout.count("chain input") == 1


# --------------------------------------------------------------------------- iptables
@pytest.mark.parametrize(
    ("name", "tool"), [("iptables", "iptables-restore"), ("ip6tables", "ip6tables-restore")]
)
@pytest.mark.parametrize("frame", [ENTRIES, EMPTY], ids=["entries", "empty"])
def test_iptables_restore_test_mode(
    tmp_path: Path, name: str, tool: str, frame: pl.DataFrame
) -> None:
    exe = need(tool)
    need_root(tool)
    path = write(tmp_path, name, frame, ".rules").paths[0]
    proc = run([exe, "--test", path])
    if proc.returncode != 0 and kernel_refused(proc):
        pytest.skip(f"kernel refused {tool} --test here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    broken = tmp_path / "broken.rules"
    broken.write_text("*filter\n:BOTGUARD - [0:0]\n-A BOTGUARD -s 1.2.3.4; } -j DROP\nCOMMIT\n")
    assert run([exe, "--test", broken]).returncode != 0


def test_iptables_reload_replaces_chain(tmp_path: Path) -> None:
    need("iptables-restore")
    path = write(tmp_path, "iptables", suffix=".rules").paths[0]
    proc = in_netns(
        f"iptables-restore --noflush < {path}; iptables-restore --noflush < {path}; "
        "iptables -S BOTGUARD"
    )
    if proc.returncode != 0 and kernel_refused(proc):
        pytest.skip(f"kernel refused iptables in a namespace: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    rules = [line for line in proc.stdout.splitlines() if line.startswith("-A BOTGUARD")]
    expected = write_export(ENTRIES, "iptables", tmp_path / "x", generated_at=AS_OF).written
    assert len(rules) == expected  # loading twice did not duplicate the rules


# --------------------------------------------------------------------------- ipset
@pytest.mark.parametrize("frame", [ENTRIES, EMPTY], ids=["entries", "empty"])
def test_ipset_restore_in_namespace(tmp_path: Path, frame: pl.DataFrame) -> None:
    need("ipset")
    result = write(tmp_path, "ipset", frame, ".ipset")
    path = result.paths[0]
    proc = in_netns(
        f"ipset restore < {path}; ipset restore < {path}; "
        "ipset list botguard_v4 | grep -c '^[0-9]' || true; "
        "ipset list botguard_v6 | grep -c '^[0-9a-f]*:' || true"
    )
    if proc.returncode != 0 and kernel_refused(proc):
        pytest.skip(f"kernel refused ipset in a namespace: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    v4_count, v6_count = (int(x) for x in proc.stdout.split())
    assert v4_count + v6_count == result.written


# --------------------------------------------------------------------------- cloud JSON
AWS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["Addresses"],
    "additionalProperties": False,
    "properties": {
        "Addresses": {
            "type": "array",
            "maxItems": 10_000,
            "items": {"type": "string", "pattern": r"^[0-9a-f.:]+/[0-9]{1,3}$"},
        }
    },
}
CLOUDFLARE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "maxItems": 10_000,
    "items": {
        "type": "object",
        "required": ["ip"],
        "additionalProperties": False,
        "properties": {
            "ip": {"type": "string", "pattern": r"^[0-9a-f.:]+(/[0-9]{1,3})?$"},
            "comment": {"type": "string", "maxLength": 500},
        },
    },
}
_TYPES = {"object": dict, "array": list, "string": str}


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """The JSON Schema subset used above; jsonschema itself when it is installed."""
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        jsonschema.validate(value, schema)
        return
    assert isinstance(value, _TYPES[schema["type"]]), f"{where}: expected {schema['type']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            assert set(value) <= set(props), f"{where}: unexpected {set(value) - set(props)}"
        for key, sub in props.items():
            if key in value:
                validate(value[key], sub, f"{where}.{key}")
    elif isinstance(value, list):
        assert len(value) <= schema.get("maxItems", len(value)), f"{where}: too many items"
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{i}]")
    else:
        assert len(value) <= schema.get("maxLength", len(value)), f"{where}: too long"
        if "pattern" in schema:
            assert re.search(schema["pattern"], value), f"{where}: {value!r} !~ {schema['pattern']}"


def test_aws_waf_payloads_match_schema(tmp_path: Path) -> None:
    result = write(tmp_path, "aws-waf", suffix=".json")
    assert [p.name for p in result.paths] == ["aws-waf.ipv4.json", "aws-waf.ipv6.json"]
    for path, version in zip(result.paths, (4, 6), strict=True):
        doc = json.loads(path.read_text())
        validate(doc, AWS_SCHEMA)
        nets = [ipaddress.ip_network(a) for a in doc["Addresses"]]
        assert all(n.version == version and n.prefixlen > 0 for n in nets)
        assert len(set(nets)) == len(nets)


def test_cloudflare_items_match_schema(tmp_path: Path) -> None:
    doc = json.loads(write(tmp_path, "cloudflare", suffix=".json").paths[0].read_text())
    validate(doc, CLOUDFLARE_SCHEMA)
    nets = [ipaddress.ip_network(item["ip"]) for item in doc]
    assert len(set(nets)) == len(nets)
    for net in nets:
        assert (8 <= net.prefixlen <= 32) if net.version == 4 else (12 <= net.prefixlen <= 64)
    validate(json.loads(write(tmp_path, "cloudflare", EMPTY, ".json").data), CLOUDFLARE_SCHEMA)  # type: ignore[arg-type]


def test_schema_validator_rejects_bad_payloads() -> None:
    with pytest.raises(AssertionError):
        validate({"Addresses": ["1.2.3.4"]}, AWS_SCHEMA)  # no prefix length
    with pytest.raises(AssertionError):
        validate([{"ip": "1.2.3.4", "comment": "x" * 501}], CLOUDFLARE_SCHEMA)
