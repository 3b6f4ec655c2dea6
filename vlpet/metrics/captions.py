"""COCO caption metrics through pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L and CIDEr (its CIDEr-D), all x100.

Captions are tokenised with pycocoevalcap's PTBTokenizer (Stanford CoreNLP, needs Java) exactly as the COCO
evaluation does. Without Java a pure-Python tokenizer that mimics PTBTokenizer's output stands in, and METEOR
(a Java program) is skipped with a warning.
"""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, PTBTokenizer

from vlpet.errors import ConfigError, unknown

DEFAULT_METRICS = ("BLEU", "METEOR", "ROUGE_L", "CIDEr")
_JAVA_METRICS = frozenset({"METEOR"})

# PTBTokenizer runs with -lowerCase, so brackets come out as "-lrb-" etc. and, unlike the upper-case entries
# in PUNCTUATIONS, survive the wrapper's punctuation filter; the fallback reproduces that.
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}
_SPLIT_WORDS = {"cannot": "can not", "gonna": "gon na", "gotta": "got ta", "wanna": "wan na", "lemme": "lem me"}
_TOKEN = re.compile(
    r"""
      \b(?:mr|mrs|ms|dr|st|jr|sr|vs|co|inc|ltd)\.   # abbreviations PTB keeps whole
    | (?:[^\W\d_]\.){2,}                            # acronyms: u.s. e.g. p.m.
    | \w+(?:(?:[-'/]|(?<=\d)[.,:](?=\d))\w+)*       # words, t-shirt, o'clock, and/or, 3.5, 1,000, 10:30
    | \.\.\.|--                                     # multi-character punctuation
    | \S                                            # any other symbol on its own
    """,
    re.VERBOSE,
)
_CLITIC = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)$")
# PTB turns a double quote into `` or '', both in PUNCTUATIONS.
_DROPPED = frozenset(PUNCTUATIONS) | {'"'}


def _fallback_tokenize(caption: str) -> str:
    """Approximate PTBTokenizer -lowerCase plus the wrapper's punctuation filter, without Java."""
    tokens = []
    for tok in _TOKEN.findall(caption.lower()):
        tok = _BRACKETS.get(tok, _SPLIT_WORDS.get(tok, tok))
        tokens.extend(_CLITIC.sub(r" \1", tok).split())
    return " ".join(t for t in tokens if t not in _DROPPED)


def _tokenize(captions: dict[Any, list[str]], java: bool) -> dict[Any, list[str]]:
    """Tokenise every caption of every id, with PTBTokenizer when Java is available."""
    if not java:
        return {k: [_fallback_tokenize(c) for c in caps] for k, caps in captions.items()}
    # PTBTokenizer pairs output lines with captions by position, so collapse every kind of line break (the
    # wrapper only replaces "\n"); PTB splits on whitespace anyway, so tokens are unchanged.
    lines = {k: [{"caption": " ".join(c.split())} for c in caps] for k, caps in captions.items()}
    return PTBTokenizer().tokenize(lines)


def _check_inputs(preds: Mapping[Any, str], refs: Mapping[Any, Sequence[str]], metrics: Sequence[str]) -> None:
    """Raise a ConfigError for unsupported metrics, empty inputs, or a prediction without references."""
    if "SPICE" in metrics:
        raise ConfigError(
            "caption metric 'SPICE' is not supported: pycocoevalcap's SPICE downloads Stanford CoreNLP at first "
            "use and does not work offline; drop it from metrics"
        )
    for name in metrics:
        if name not in DEFAULT_METRICS:
            raise unknown("caption metric", name, DEFAULT_METRICS)
    if not metrics:
        raise ConfigError(f"caption_scores needs at least one metric; valid: {', '.join(DEFAULT_METRICS)}")
    if not preds:
        raise ConfigError("caption_scores got no predictions")
    for key, caption in preds.items():
        if not isinstance(caption, str):
            kind = type(caption).__name__
            raise ConfigError(f"caption_scores: prediction for id {key!r} must be a string, got {kind}")
        ref = refs.get(key)
        if not ref or isinstance(ref, str):
            raise ConfigError(f"caption_scores: id {key!r} has a prediction but no list of reference captions")


def caption_scores(
    preds: Mapping[Any, str],
    refs: Mapping[Any, Sequence[str]],
    metrics: tuple[str, ...] = DEFAULT_METRICS,
) -> dict[str, float]:
    """COCO caption scores (x100) of one caption per id against that id's references.

    `metrics` picks from "BLEU" (gives "BLEU-1".."BLEU-4"), "METEOR", "ROUGE_L" and "CIDEr"; references of
    ids without a prediction are ignored. Without Java, METEOR is skipped and a fallback tokenizer is used,
    with a warning.
    """
    _check_inputs(preds, refs, metrics)
    java = shutil.which("java") is not None
    if not java:
        skipped = [m for m in metrics if m in _JAVA_METRICS]
        what = f"skipped {', '.join(skipped)} and " if skipped else ""
        warnings.warn(
            f"no Java found: {what}tokenised captions with a Python approximation of PTBTokenizer; install Java "
            "(e.g. `apt-get install -y default-jre-headless`) to enable METEOR and the official tokenizer",
            stacklevel=2,
        )
    # One tokenizer call (one JVM start) for predictions and references: the prediction goes first per id.
    tokens = _tokenize({k: [pred, *refs[k]] for k, pred in preds.items()}, java)
    res = {k: caps[:1] for k, caps in tokens.items()}
    gts = {k: caps[1:] for k, caps in tokens.items()}

    scores: dict[str, float] = {}
    for name in metrics:
        if name == "BLEU":
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
            scores.update({f"BLEU-{n}": 100.0 * float(b) for n, b in enumerate(bleu, start=1)})
        elif name == "METEOR" and java:
            # Meteor() starts a JVM that its __del__ stops once this temporary is dropped.
            scores["METEOR"] = 100.0 * float(Meteor().compute_score(gts, res)[0])
        elif name == "ROUGE_L":
            scores["ROUGE_L"] = 100.0 * float(Rouge().compute_score(gts, res)[0])
        elif name == "CIDEr":
            scores["CIDEr"] = 100.0 * float(Cider().compute_score(gts, res)[0])
    return scores


def cider(preds: Mapping[Any, str], refs: Mapping[Any, Sequence[str]]) -> float:
    """CIDEr-D (x100) alone: the cheap per-epoch validation metric (no METEOR JVM start-up)."""
    return caption_scores(preds, refs, metrics=("CIDEr",))["CIDEr"]
