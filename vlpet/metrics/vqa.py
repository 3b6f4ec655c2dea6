"""VQA v2 accuracy, replicating the official evaluation (GT-Vision-Lab/VQA, vqaEval.py) answer by answer.

The official scorer's quirks are kept on purpose so that numbers match published ones:
- the prediction is always normalised (punctuation, then digits/articles/contractions), but the ground-truth
  answers only get the punctuation step, and only when the annotators disagree;
- the period regex `(?!<=\\d)` is a look-*ahead* for the text "<=digit" (a typo for a look-behind), so it
  removes every period not followed by a digit, and `re.UNICODE` is passed where `sub` expects `count`,
  which caps the removals at 32.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from vlpet.errors import ConfigError

_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_PERIOD_STRIP_COUNT = int(re.UNICODE)  # the official call passes re.UNICODE (32) positionally as `count`

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
# The official table, verbatim: keys with capitals ("Im", "Ive", ...) can never match lowercased text, and
# "somebody'd" maps to "somebodyd"; both are kept because the official scorer has them.
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}


def _process_punctuation(text: str) -> str:
    """The official processPunctuation: each mark is deleted when it touches a space in the input (or the
    input has a digit,digit comma anywhere), else replaced by a space; then periods not before a digit go."""
    has_number_comma = _COMMA_STRIP.search(text) is not None
    out = text
    for p in _PUNCT:
        # The test reads the original text, not `out`, as the official loop does.
        glued = not (p + " " in text or " " + p in text or has_number_comma)
        out = out.replace(p, " " if glued else "")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def _process_digit_article(text: str) -> str:
    """The official processDigitArticle: lowercase, number words to digits, drop articles, expand contractions."""
    words = (_NUMBER_WORDS.get(w, w) for w in text.lower().split())
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES)


def normalize_answer(ans: str) -> str:
    """Normalise a predicted answer exactly as the official VQA evaluation does before matching."""
    text = ans.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


def vqa_soft_score(pred: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy of one prediction against its (usually 10) ground-truth answers, in [0, 1].

    For each GT answer left out in turn, acc = min(1, #remaining GT answers equal to the prediction / 3); the
    score is the mean over the leave-one-out subsets. The official code leaves out one annotation at a time
    (its answer dicts differ by answer_id), so leaving out by position here is the same thing.
    """
    if not answers:
        raise ConfigError("vqa_soft_score needs at least one ground-truth answer, got none")
    pred = normalize_answer(pred)
    # Official rule: GT answers get punctuation processing only (no strip, lowercase or digit mapping), and
    # only when the annotators disagree.
    gts = [_process_punctuation(a) for a in answers] if len(set(answers)) > 1 else list(answers)
    n_match = sum(gt == pred for gt in gts)
    return sum(min(1.0, (n_match - (gt == pred)) / 3) for gt in gts) / len(gts)


def vqa_accuracy(preds: Mapping[Any, str], answers: Mapping[Any, Sequence[str]]) -> float:
    """Mean official VQA accuracy (x100) over the questions in `preds`; `answers` maps question id to GT answers."""
    if not preds:
        raise ConfigError("vqa_accuracy got no predictions")
    total = 0.0
    for qid, pred in preds.items():
        if not answers.get(qid):
            raise ConfigError(f"vqa_accuracy: question {qid!r} has a prediction but no ground-truth answers")
        total += vqa_soft_score(pred, answers[qid])
    return 100.0 * total / len(preds)


def topk_score(pred: str, label: Mapping[str, float]) -> float:
    """The soft score of `pred` in an LXMERT-style label dict {answer: score}; 0 for an answer not in it."""
    return label.get(pred, 0.0)
