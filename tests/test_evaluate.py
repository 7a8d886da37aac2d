"""evaluate_frame on hand-made decision/label frames; expected numbers worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from botguard.cli.app import app
from botguard.model.evaluation import describe, evaluate_frame


def _decisions(rows: list[tuple[str, str, float, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"client": pl.String, "action": pl.String, "score": pl.Float64,
                                      "verified_crawler": pl.String}, orient="row")


def _labels(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"client": pl.String, "label": pl.String, "kind": pl.String}, orient="row")


@pytest.fixture
def mixed() -> dict[str, object]:
    # Score order: b1 .9 (bad), h1 .8, b2 .7 (bad), h2 .3, b3 .2 (bad), h3 .1, g1 .05.
    decisions = _decisions([
        ("b1", "block", 0.9, None), ("b2", "challenge", 0.7, None), ("b3", "allow", 0.2, None),
        ("h1", "block", 0.8, None), ("h2", "challenge", 0.3, None), ("h3", "allow", 0.1, None),
        ("g1", "allow", 0.05, "googlebot"),
        ("z9", "block", 0.99, None),  # not labelled: ignored
    ])
    labels = _labels([
        ("b1", "bad_bot", "swarm"), ("b2", "bad_bot", "swarm"), ("b3", "bad_bot", "probe"),
        ("h1", "human", "returning"), ("h2", "human", "returning"), ("h3", "human", "bouncer"),
        ("g1", "good_bot", "googlebot"),
        ("x1", "human", "returning"),  # labelled but not in the logs
    ])
    return evaluate_frame(decisions, labels)


def test_evaluate_headline_numbers(mixed: dict[str, object]) -> None:
    m = mixed
    assert (m["clients_labelled"], m["clients_missing_from_logs"], m["clients_evaluated"], m["bad_bots_evaluated"]) == (8, 1, 7, 3)
    assert m["prevalence_bad_bot"] == 0.4286  # 3 of 7
    # Precision at each bad bot's rank: 1/1, 2/3, 3/5 → mean 0.75556.
    assert m["pr_auc_bad_bot"] == 0.7556
    # Bad-over-not-bad pairs ranked right: 4 + 3 + 2 of 3 × 4.
    assert m["roc_auc_bad_bot"] == 0.75
    assert m["notes"] == []


def test_evaluate_cutoffs_keep_old_keys(mixed: dict[str, object]) -> None:
    m = mixed
    # block: b1, h1 flagged → 1 of 2 right, 1 of 3 bad bots, 1 of 3 humans.
    assert (m["bad_bot_precision"], m["bad_bot_recall"], m["human_block_rate"], m["good_bot_blocked"]) == (0.5, 0.3333, 0.33333, 0)
    # block+challenge: b1, b2, h1, h2 flagged → 2 of 4 right, 2 of 3 bad bots, 2 of 3 humans.
    assert (m["bad_bot_precision_bc"], m["bad_bot_recall_bc"], m["human_challenge_or_block_rate"]) == (0.5, 0.6667, 0.66667)
    assert m["cutoffs"] == {
        "block": {"actions": ["block"], "flagged": 2, "bad_bot_flagged": 1, "precision": 0.5, "recall": 0.3333,
                  "humans_flagged": 1, "human_rate": 0.33333},
        "block+challenge": {"actions": ["block", "challenge"], "flagged": 4, "bad_bot_flagged": 2, "precision": 0.5,
                            "recall": 0.6667, "humans_flagged": 2, "human_rate": 0.66667},
    }
    assert m["per_label"] == {
        "human": {"precision": 0.5, "recall": 0.6667, "f1": 0.5714, "support": 3},
        "good_bot": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1},
        "bad_bot": {"precision": 0.5, "recall": 0.3333, "f1": 0.4, "support": 3},
    }
    assert m["confusion_matrix"]["matrix"] == [[1, 1, 0, 1], [0, 0, 0, 1], [1, 1, 0, 1]]


def test_evaluate_per_kind_table(mixed: dict[str, object]) -> None:
    def row(label: str, kind: str, n: int, blocked: int, challenged: int) -> dict[str, object]:
        return {"label": label, "kind": kind, "clients": n, "blocked": blocked, "challenged": challenged,
                "caught": blocked, "recall": round(blocked / n, 4)}

    assert mixed["per_kind"] == {
        "bad_bot/probe": row("bad_bot", "probe", 1, 0, 0),
        "bad_bot/swarm": row("bad_bot", "swarm", 2, 1, 1),
        "good_bot/googlebot": row("good_bot", "googlebot", 1, 0, 0),
        "human/bouncer": row("human", "bouncer", 1, 0, 0),
        "human/returning": row("human", "returning", 2, 1, 1),  # x1 is not in the logs
    }
    assert list(mixed["per_kind"]) == sorted(mixed["per_kind"])


def test_evaluate_describe_sets_pr_auc_against_the_bad_bot_share(mixed: dict[str, object]) -> None:
    assert describe(mixed) == [
        "7 of 8 labelled clients found in the logs; 3 are bad bots (share 0.43)",
        "PR-AUC 0.76 (a random score would get 0.43, the bad-bot share)",
        "ROC-AUC 0.75 (a random score would get 0.50)",
        "block: caught 1 of 3 bad bots (recall 0.33); 2 clients flagged (precision 0.50); humans flagged 1 (33.33%)",
        "block+challenge: caught 2 of 3 bad bots (recall 0.67); 4 clients flagged (precision 0.50); humans flagged 2 (66.67%)",
    ]


def test_evaluate_high_pr_auc_that_catches_nothing_is_shown_as_such() -> None:
    """The reviewer's case: 70% bots, a fair ranking, and nothing blocked or challenged."""
    bad = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    human = [0.85, 0.45, 0.1]
    decisions = _decisions([(f"b{i}", "monitor", s, None) for i, s in enumerate(bad)]
                           + [(f"h{i}", "allow", s, None) for i, s in enumerate(human)])
    labels = _labels([(f"b{i}", "bad_bot", "swarm") for i in range(7)] + [(f"h{i}", "human", "human") for i in range(3)])
    m = evaluate_frame(decisions, labels)
    assert m["prevalence_bad_bot"] == 0.7
    # Ranks of bad bots 1,3,4,5,6,8,9: (1 + 2/3 + 3/4 + 4/5 + 5/6 + 6/8 + 7/9) / 7 = 0.79683.
    assert m["pr_auc_bad_bot"] == 0.7968
    # Pairs ranked right: 3 + 2 + 2 + 2 + 2 + 1 + 1 = 13 of 21.
    assert m["roc_auc_bad_bot"] == 0.619
    assert (m["bad_bot_recall"], m["bad_bot_recall_bc"], m["bad_bot_precision"], m["bad_bot_precision_bc"]) == (0.0, 0.0, 0.0, 0.0)
    lines = describe(m)
    assert "PR-AUC 0.80 (a random score would get 0.70, the bad-bot share)" in lines
    assert "block: caught 0 of 7 bad bots (recall 0.00); 0 clients flagged (precision 0.00); humans flagged 0 (0.00%)" in lines


@pytest.mark.parametrize(("label", "which"), [("bad_bot", "all"), ("human", "none")])
def test_evaluate_one_class_reports_no_auc_with_a_note(label: str, which: str) -> None:
    decisions = _decisions([("a", "block", 0.9, None), ("b", "allow", 0.1, None)])
    m = evaluate_frame(decisions, _labels([("a", label, label), ("b", label, label)]))
    assert m["pr_auc_bad_bot"] is None and m["roc_auc_bad_bot"] is None
    assert m["notes"] == [f"{which} of the 2 labelled clients in the logs are bad_bot: "
                          "PR-AUC and ROC-AUC need both bad and not-bad clients and are not reported"]
    assert m["prevalence_bad_bot"] == (1.0 if label == "bad_bot" else 0.0)
    assert "PR-AUC and ROC-AUC: not reported, see the note" in describe(m)
    json.dumps(m)  # None, not NaN


def test_evaluate_no_labelled_client_in_logs() -> None:
    m = evaluate_frame(_decisions([("a", "block", 0.9, None)]), _labels([("z", "bad_bot", "swarm")]))
    assert (m["clients_evaluated"], m["clients_missing_from_logs"], m["prevalence_bad_bot"]) == (0, 1, None)
    assert m["pr_auc_bad_bot"] is None and m["per_kind"] == {}
    assert m["notes"] == ["no labelled client appears in the logs: nothing to evaluate"]
    assert describe(m)[0] == "0 of 1 labelled clients found in the logs; 0 are bad bots"


def test_evaluate_labels_without_kind() -> None:
    decisions = _decisions([("a", "block", 0.9, None), ("b", "allow", 0.1, None)])
    labels = pl.DataFrame({"client": ["a", "b"], "label": ["bad_bot", "human"]})
    m = evaluate_frame(decisions, labels)
    assert m["per_kind"] == {} and m["notes"] == ["labels have no kind column: no per-kind breakdown"]
    assert (m["pr_auc_bad_bot"], m["roc_auc_bad_bot"], m["bad_bot_recall"]) == (1.0, 1.0, 1.0)


def test_evaluate_cli_text_and_json(fixtures_dir: Path, tmp_path: Path) -> None:
    shop = fixtures_dir / "shop"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  enabled: false\n")  # rules only: the output's shape is under test
    args = ["evaluate", str(shop / "access.log"), "--labels", str(shop / "labels.csv"), "-c", str(cfg)]
    runner = CliRunner()
    res = runner.invoke(app, [*args, "--json"], env={"BOTGUARD_DATA": str(tmp_path)})
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout)
    assert m["prevalence_bad_bot"] == round(m["bad_bots_evaluated"] / m["clients_evaluated"], 4)
    assert {"roc_auc_bad_bot", "bad_bot_precision_bc", "bad_bot_recall_bc", "human_challenge_or_block_rate"} <= m.keys()
    assert "human/returning" in m["per_kind"]
    res = runner.invoke(app, args, env={"BOTGUARD_DATA": str(tmp_path)})
    assert res.exit_code == 0, res.output
    share = f"{m['prevalence_bad_bot']:.2f}"
    assert f"PR-AUC {m['pr_auc_bad_bot']:.2f} (a random score would get {share}, the bad-bot share)" in res.output
    assert "Per label and kind" in res.output and "block+challenge" in res.output
