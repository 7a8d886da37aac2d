"""Config loading: defaults, key-by-key overrides, rules merged by id, located errors, hash."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from botguard.config import config_hash, default_config_path, dump_config, load_config
from botguard.errors import ConfigError


def _write(tmp_path: Path, text: str, name: str = "user.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def _one(problems: list[str], key: str) -> str:
    """The single problem about ``key`` (a key path as printed)."""
    hits = [p for p in problems if f": {key}: " in p]
    assert len(hits) == 1, (key, problems)
    return hits[0]


# --------------------------------------------------------------------------- defaults / merge
def test_defaults_load() -> None:
    cfg = load_config()
    assert cfg.ingest.format == "auto"
    assert cfg.session.gap == 1800.0  # '30m'
    assert cfg.ingest.batch_bytes == 32 * 1024**2  # '32MiB'
    assert cfg.ingest.trusted_proxies == []
    assert {"iliou", "nginx_xff", "jsonl"} <= set(cfg.ingest.formats)
    assert cfg.policy.thresholds.block >= cfg.policy.thresholds.challenge >= cfg.policy.thresholds.monitor
    assert load_config(None) == cfg
    assert load_config(default_config_path()) == cfg


def test_config_is_frozen() -> None:
    cfg = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.session.gap = 5.0  # type: ignore[misc]


def test_user_file_overrides_one_key_and_keeps_the_rest(tmp_path: Path) -> None:
    base = load_config()
    cfg = load_config(_write(tmp_path, "session:\n  gap: 45m\n"))
    assert cfg.session.gap == 45 * 60
    # Siblings of the overridden key keep their defaults...
    assert cfg.session.key == base.session.key
    assert cfg.session.out_of_order_tolerance == base.session.out_of_order_tolerance
    # ...and so does every other section.
    assert cfg.ingest == base.ingest
    assert cfg.policy == base.policy
    assert cfg.rules == base.rules


def test_nested_mappings_merge_and_lists_replace(tmp_path: Path) -> None:
    base = load_config()
    cfg = load_config(_write(tmp_path, (
        "ingest:\n"
        "  trusted_proxies: [10.0.0.0/8, '2001:db8::/32']\n"
        "  formats:\n"
        "    mine: {type: nginx, log_format: '$remote_addr [$time_local] \"$request\" $status'}\n"
        "catalogue:\n"
        "  asset_extensions: [css]\n"
    )))
    assert cfg.ingest.trusted_proxies == ["10.0.0.0/8", "2001:db8::/32"]
    # formats is a mapping: the user's entry is added, the packaged ones stay.
    assert set(cfg.ingest.formats) == set(base.ingest.formats) | {"mine"}
    # a list replaces the default list entirely
    assert cfg.catalogue.asset_extensions == ["css"]
    assert cfg.catalogue.asset_prefixes == base.catalogue.asset_prefixes


def test_rules_merge_by_id(tmp_path: Path) -> None:
    base = load_config()
    if len(base.rules) < 2:
        pytest.skip("the packaged defaults define fewer than two rules")
    first, second = base.rules[0], base.rules[1]
    new_weight = 0.11 if first.weight != 0.11 else 0.12
    cfg = load_config(_write(tmp_path, (
        "rules:\n"
        f"  - id: {first.id}\n"
        f"    weight: {new_weight}\n"
        f"  - id: {second.id}\n"
        "    enabled: false\n"
        "  - id: my_extra_rule\n"
        "    when: requests > 5\n"
        "    weight: 0.2\n"
        "    kind: scraper\n"
        "    reason: more than five requests\n"
    )))
    by_id = {r.id: r for r in cfg.rules}
    # The overridden rule keeps its position and every key the user did not restate.
    assert cfg.rules[0].id == first.id
    assert cfg.rules[0] == first.model_copy(update={"weight": new_weight})
    assert cfg.rules[1] == second.model_copy(update={"enabled": False})
    # Untouched rules are unchanged; a new id is appended.
    assert cfg.rules[2:-1] == base.rules[2:]
    assert cfg.rules[-1].id == "my_extra_rule"
    assert len(cfg.rules) == len(base.rules) + 1
    assert by_id["my_extra_rule"].enabled is True


def test_rules_merge_by_id_across_default_and_user_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Independent of the packaged rules: a defaults file with two rules, a user file that
    tunes one of them."""
    import botguard.config.loader as loader

    data = yaml.safe_load(default_config_path().read_text(encoding="utf-8"))
    data["rules"] = [
        {"id": "alpha", "when": "requests > 1", "weight": 0.5, "kind": "scraper", "reason": "a"},
        {"id": "beta", "when": "requests > 2", "weight": 0.6, "kind": "probe", "reason": "b"},
    ]
    defaults = _write(tmp_path, yaml.safe_dump(data), "defaults.yaml")
    monkeypatch.setattr(loader, "default_config_path", lambda: defaults)
    cfg = load_config(_write(tmp_path, "rules:\n  - {id: beta, weight: 0.9}\n"))
    assert [(r.id, r.weight, r.kind, r.when) for r in cfg.rules] == [
        ("alpha", 0.5, "scraper", "requests > 1"),
        ("beta", 0.9, "probe", "requests > 2"),
    ]


def test_empty_user_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, "")) == load_config()
    assert load_config(_write(tmp_path, "# only a comment\n", "c.yaml")) == load_config()


# --------------------------------------------------------------------------- located errors
def test_bad_duration_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "session:\n  gap: soon\n")
    assert _problems(path) == [f"{path}:2: session.gap: expected a duration like '30m', got 'soon'"]


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    path = _write(tmp_path, "session:\n  gap: 10m\n  colour: red\n")
    assert _problems(path) == [
        f"{path}:3: session.colour: unknown key (allowed: gap, ipv6_prefix, key, out_of_order_tolerance)"
    ]


def test_unknown_top_level_section_lists_sections(tmp_path: Path) -> None:
    path = _write(tmp_path, "sesion:\n  gap: 10m\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:1: sesion: unknown key (allowed: ")
    assert "session" in problem and "ingest" in problem and "policy" in problem


def test_unknown_key_in_a_rule_lists_rule_keys(tmp_path: Path) -> None:
    base = load_config()
    if not base.rules:
        pytest.skip("no packaged rules")
    rid = base.rules[-1].id
    path = _write(tmp_path, f"rules:\n  - id: {rid}\n    colour: red\n")
    (problem,) = _problems(path)
    assert problem == (
        f"{path}:3: rules[{rid}].colour: unknown key "
        "(allowed: enabled, group, id, kind, reason, weight, when)"
    )


@pytest.mark.parametrize(
    ("text", "line", "key", "expect"),
    [
        ("ingest:\n  sniff_lines: many\n", 2, "ingest.sniff_lines", "expected an integer, got 'many'"),
        ("model:\n  weight: high\n", 2, "model.weight", "expected a number, got 'high'"),
        ("crawlers:\n  rdns:\n    enabled: perhaps\n", 3, "crawlers.rdns.enabled", "expected true or false, got 'perhaps'"),
        ("ingest:\n  batch_bytes: lots\n", 2, "ingest.batch_bytes", "expected a size like '64MiB', got 'lots'"),
        ("site:\n  timezone: Mars/Olympus\n", 2, "site.timezone", "expected an IANA time zone"),
        ("session:\n  key: cookie\n", 2, "session.key", "expected one of 'ip'"),
        ("catalogue:\n  product_patterns: /p/\n", 2, "catalogue.product_patterns", "valid list, got '/p/'"),
        ("ingest:\n  forwarded_field: x_real_ip\n", 2, "ingest.forwarded_field", "expected 'x_forwarded_for', got 'x_real_ip'"),
        ("network:\n  datacenter_asns: [ASX]\n", 2, "network.datacenter_asns[0]", "expected an AS number"),
    ],
)
def test_wrong_type_is_located(tmp_path: Path, text: str, line: int, key: str, expect: str) -> None:
    path = _write(tmp_path, text)
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:{line}: {key}: "), problem
    assert expect in problem


def test_invalid_regex_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "catalogue:\n  product_patterns:\n    - '^/p/(\\d+)$'\n    - '(unclosed'\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:4: catalogue.product_patterns[1]: invalid regular expression '(unclosed'")
    assert "missing )" in problem


def test_bad_cidr_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "ingest:\n  trusted_proxies:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n    - 10.0.0.1/8\n")
    problems = _problems(path)
    assert len(problems) == 2
    assert _one(problems, "ingest.trusted_proxies[1]").startswith(
        f"{path}:4: ingest.trusted_proxies[1]: expected an IP address or CIDR, got '10.0.0.0/33'"
    )
    assert _one(problems, "ingest.trusted_proxies[2]").startswith(f"{path}:5: ")
    assert "host bits set" in _one(problems, "ingest.trusted_proxies[2]")


def test_cidr_is_normalized(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "ingest:\n  trusted_proxies: ['2001:0db8:0::/32', 10.1.2.3]\n"))
    assert cfg.ingest.trusted_proxies == ["2001:db8::/32", "10.1.2.3/32"]


def test_thresholds_out_of_order(tmp_path: Path) -> None:
    path = _write(tmp_path, "policy:\n  thresholds:\n    block: 0.5\n    challenge: 0.7\n")
    assert _problems(path) == [f"{path}:2: policy.thresholds: expected block >= challenge >= monitor"]


def test_several_errors_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, (
        "session:\n"
        "  gap: soon\n"                                 # 2
        "  colour: red\n"                               # 3
        "catalogue:\n"
        "  product_patterns: ['(unclosed']\n"           # 5
        "ingest:\n"
        "  trusted_proxies: [not-a-network]\n"          # 7
        "policy:\n"
        "  thresholds: {block: 0.1, challenge: 0.9}\n"  # 9
    ))
    problems = _problems(path)
    assert len(problems) == 5, problems
    located = {re.match(rf"{re.escape(str(path))}:(\d+): (\S+): ", p).groups() for p in problems}  # type: ignore[union-attr]
    assert located == {
        ("2", "session.gap"),
        ("3", "session.colour"),
        ("5", "catalogue.product_patterns[0]"),
        ("7", "ingest.trusted_proxies[0]"),
        ("9", "policy.thresholds"),
    }
    # The exception's text is every problem, one per line.
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).splitlines() == problems


def test_rule_error_located_in_user_file(tmp_path: Path) -> None:
    base = load_config()
    if len(base.rules) < 2:
        pytest.skip("no packaged rules")
    rid = base.rules[1].id
    path = _write(tmp_path, f"rules:\n  - id: {rid}\n    weight: 5\n")
    (problem,) = _problems(path)
    # Named by its id: its index in the merged list would mean nothing in the user's file.
    assert problem.startswith(f"{path}:3: rules[{rid}].weight: ")
    assert "5" in problem


def test_invalid_yaml_is_located(tmp_path: Path) -> None:
    path = _write(tmp_path, "session:\n  gap: 30m\n  key: [ip\n")
    (problem,) = _problems(path)
    assert re.match(rf"{re.escape(str(path))}:\d+: invalid YAML: ", problem), problem


def test_invalid_yaml_indentation_is_located_on_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "session:\n  gap: 30m\n   key: ip\n")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:3: invalid YAML: "), problem


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "- a\n- b\n")
    assert _problems(path) == [f"{path}:1: expected a mapping of sections at the top level"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert _problems(path) == [f"{path}: config file not found"]


# --------------------------------------------------------------------------- hash / dump
def test_config_hash_is_stable_and_tracks_values(tmp_path: Path) -> None:
    h = config_hash(load_config())
    assert re.fullmatch(r"[0-9a-f]{12}", h)
    assert config_hash(load_config()) == h
    # Restating a default value changes nothing; changing one does.
    assert config_hash(load_config(_write(tmp_path, "session:\n  gap: 30m\n", "same.yaml"))) == h
    assert config_hash(load_config(_write(tmp_path, "session:\n  gap: 1800s\n", "same2.yaml"))) == h
    assert config_hash(load_config(_write(tmp_path, "session:\n  gap: 31m\n", "diff.yaml"))) != h


def test_dump_config_loads_back(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "session:\n  gap: 45m\ningest:\n  trusted_proxies: [10.0.0.0/8]\n"))
    text = dump_config(cfg)
    assert "gap: 45m" in text
    again = load_config(_write(tmp_path, text, "dumped.yaml"))
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)


def test_every_shipped_config_loads() -> None:
    """The example configs in configs/ are what the README tells users to pass."""
    root = Path(__file__).resolve().parent.parent / "configs"
    files = sorted(root.glob("*.yaml"))
    assert {f.name for f in files} >= {"default.yaml", "demo.yaml", "iliou.yaml"}
    for f in files:
        load_config(f)
    assert load_config(root / "iliou.yaml").session.key == "field:session_id"
