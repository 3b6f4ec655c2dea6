"""VL pre-training of the embedded tiny backbones (VL-BART and VL-T5), so PET studies start from a
pretrained backbone as the paper's do: a frozen random backbone cannot be tuned in CPU minutes, and a
backbone that never produced a word cannot be made to say it by a small module.

The pre-training world is the benchmark's (same colour/shape codes), its images are its own, and its
objectives are generic VL pre-training ones in formats of their own (VL-T5's and LXMERT's kinds:
grounded listing, grounded captioning, visual grounding, image-text matching, denoising), so the
backbone can read objects, their colours, shapes, counts and positions, and can say every word of the
world (including `yes`/`no`, `true`/`false`, `left`/`right` and the digits), but has never seen a
downstream question, statement or caption format with an image:

    one image   "objects: "            -> "red circle top left , blue star bottom right"
                "slots: "              -> "red circle (0) , blue star (8)"
                "count: "              -> "two"          "count circles: " -> "1"
                "at top left: "        -> "red circle"   (or "nothing")
                "find blue star: "     -> "bottom right" (or "none")
                "match: blue star , red cross" -> "no"   (image-text matching)
                "claim: red circle left of blue star" -> "true"  (relation over positions)
    two images  "first: " / "second: " -> the listing of the left / right image
                "pair count: "         -> "two three"
                "in second: red star"  -> "yes"
    no image    text infilling of the benchmark's sentences (BART's objective; T5 uses the same spans)

The slot numbers teach digits as distinct tokens, as any real pre-trained model knows them: video QA
answers "aK" with a digit. Pair examples teach the second image-order embedding (NLVR2 reads pairs).

    python -m vlpet.train.pretrain vlpet/assets/mini-vl-bart                  # the shipped VL-BART
    python -m vlpet.train.pretrain vlpet/assets/mini-vl-t5 --arch mini-t5     # the shipped VL-T5
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vlpet.data.synthetic import (
    COLORS,
    NUMBER_WORDS,
    SHAPES,
    SLOTS,
    Obj,
    World,
    captions,
    gqa_question,
    nlvr_statement,
    plural,
    vqa_question,
)
from vlpet.data.tasks import TASKS
from vlpet.data.tokenizer import train_tokenizer
from vlpet.errors import entry_point
from vlpet.models import BackboneConfig, VLInputs, build_vl_model
from vlpet.models.backbones import PRESETS
from vlpet.models.vl_model import save_vl_pretrained
from vlpet.train.config import TrainConfig
from vlpet.train.evaluate import task_loss
from vlpet.train.loop import build_optimizer, optimizer_step, seed_everything

ROWS = {0: "top", 3: "middle", 6: "bottom"}
COLS = {0: "left", 3: "center", 6: "right"}
# per-example mean, then batch mean (the paper's fine-tuning loss): a token mean would let the long listings
# drown the one-word answers of the query objectives
EXAMPLE_LOSS = TASKS["gqa"]
PREFIXES = ["objects: ", "slots: ", "count: ", "at ", "find ", "match: ", "claim: ", "first: ", "second: ", "pair count: ",
            "in first: ", "in second: "]


@dataclass(frozen=True)
class PretrainConfig:
    """Size and optimisation of an embedded backbone's pre-training (`arch`: a tiny or mini preset)."""

    seed: int = 1234
    arch: str = "mini-bart"
    feat_dim: int = 128
    images: int = 4000
    steps: int = 5000
    batch_size: int = 48
    pair_share: float = 0.3  # share of steps that train on image pairs
    queries: int = 3  # draws of each query objective per image: they are the hard ones to learn
    lr: float = 1e-3
    warmup_ratio: float = 0.05

    def optimisation(self) -> TrainConfig:
        """The optimiser settings: the fine-tuning defaults (AdamW, linear warm-up and decay, clipping) at
        this learning rate and warm-up."""
        return TrainConfig(lr=self.lr, warmup_ratio=self.warmup_ratio)


def _where(o: Obj) -> str:
    return f"{ROWS[o[2]]} {COLS[o[3]]}"


def _listing(objects: list[Obj]) -> str:
    return " , ".join(f"{c} {s} {_where(o)}" for o in objects for c, s in [o[:2]])


def _slots(objects: list[Obj]) -> str:
    # "(4)", not "4": the digit is then the same word-internal token as in a video QA answer "a4"
    return " , ".join(f"{c} {s} ({SLOTS.index((r, col))})" for c, s, r, col in objects)


def _infill(rng: random.Random, text: str, mask: str) -> str:
    """Replace one random span of 1-3 words by `mask` (BART's text infilling; T5's sentinel token)."""
    words = text.split()
    start = rng.randrange(len(words))
    return " ".join(words[:start] + [mask] + words[start + rng.randint(1, 3):])


def _random_object(rng: random.Random, objects: list[Obj]) -> tuple[str, str]:
    """A (colour, shape) that is in the scene half of the time."""
    return rng.choice(objects)[:2] if rng.random() < 0.5 else (rng.choice(COLORS), rng.choice(SHAPES))


def _query_pairs(rng: random.Random, objects: list[Obj]) -> list[tuple[str, str]]:
    """One draw of each query-conditioned objective: the text names what to look for."""
    shape = rng.choice(SHAPES if rng.random() < 0.3 else [o[1] for o in objects])
    r, c = rng.choice([o[2:] for o in objects] if rng.random() < 0.5 else SLOTS)
    at = next((f"{o[0]} {o[1]}" for o in objects if o[2:] == (r, c)), "nothing")
    color, shape_f = _random_object(rng, objects)
    found = next((_where(o) for o in objects if o[:2] == (color, shape_f)), "none")
    other = [_random_object(rng, objects) for _ in range(rng.randint(1, 2))]
    match = all(any(o[:2] == x for o in objects) for x in other)
    pairs = [(f"count {plural(shape)}: ", str(sum(o[1] == shape for o in objects))),
             (f"at {ROWS[r]} {COLS[c]}: ", at), (f"find {color} {shape_f}: ", found),
             ("match: " + " , ".join(f"{a} {b}" for a, b in other), "yes" if match else "no")]
    if len(objects) >= 2:
        a, b = rng.sample(objects, 2)
        if a[3] != b[3]:
            side = rng.choice(("left", "right"))
            truth = (a[3] < b[3]) == (side == "left")
            pairs.append((f"claim: {a[0]} {a[1]} {side} of {b[0]} {b[1]}", "true" if truth else "false"))
    return pairs


def single_image_pairs(rng: random.Random, objects: list[Obj], queries: int) -> list[tuple[str, str]]:
    """(source, target) pairs of the one-image objectives for a scene, `queries` draws of the query ones."""
    return [("objects: ", _listing(objects)), ("slots: ", _slots(objects)), ("count: ", NUMBER_WORDS[len(objects)]),
            *(p for _ in range(queries) for p in _query_pairs(rng, objects))]


def image_pair_pairs(rng: random.Random, first: list[Obj], second: list[Obj]) -> list[tuple[str, str]]:
    """(source, target) pairs of the two-image objectives: each image read on its own inside a pair."""
    pairs = [("first: ", _listing(first)), ("second: ", _listing(second)),
             ("pair count: ", f"{NUMBER_WORDS[len(first)]} {NUMBER_WORDS[len(second)]}")]
    for which, objects in (("first", first), ("second", second)):
        color, shape = _random_object(rng, objects)
        pairs.append((f"in {which}: {color} {shape}", "yes" if any(o[:2] == (color, shape) for o in objects) else "no"))
    return pairs


def make_corpus(cfg: PretrainConfig) -> tuple[np.ndarray, list[tuple[int, str, str]], list[tuple[int, int, str, str]], list[str]]:
    """Features of the pre-training images (the last one blank), one-image (image, source, target)
    examples, two-image (first, second, source, target) examples, and all texts (tokenizer corpus)."""
    world = World(cfg.seed, cfg.feat_dim)
    rng = world.rng
    mask = "<mask>" if PRESETS[cfg.arch][0] == "bart" else "<extra_id_0>"
    scenes = [world.scene() for _ in range(cfg.images)]
    feats = np.stack([world.features(s) for s in scenes]).astype(np.float32)
    blank = len(scenes)  # index of the all-zero image used by text-only examples
    feats = np.concatenate([feats, np.zeros((1, *feats.shape[1:]), np.float32)])
    singles, doubles, texts = [], [], []
    for i, objects in enumerate(scenes):
        j = rng.randrange(len(scenes))
        sentences = [vqa_question(rng, objects)[0], gqa_question(rng, objects)[0],
                     nlvr_statement(rng, objects, scenes[j])[0], rng.choice(captions(objects))]
        examples = single_image_pairs(rng, objects, cfg.queries)
        pair_examples = image_pair_pairs(rng, objects, scenes[j])
        texts += sentences + [s + t for s, t in examples + pair_examples]
        singles += [(i, s, t) for s, t in examples] + [(blank, _infill(rng, s, mask), s) for s in sentences]
        doubles += [(i, j, s, t) for s, t in pair_examples]
    return feats, singles, doubles, texts


def pretrain(out_dir: str | Path, cfg: PretrainConfig = PretrainConfig(), log_every: int = 250) -> Path:
    """Train the tokenizer and the tiny VL backbone on the pre-training corpus and save both to `out_dir`."""
    out_dir = Path(out_dir)
    seed_everything(cfg.seed)
    feats, singles, doubles, texts = make_corpus(cfg)
    words = ["true", "false", "yes", "no", "left", "right", "nothing", "none", *NUMBER_WORDS, *(str(n) for n in range(10))]
    family = PRESETS[cfg.arch][0]
    train_tokenizer(texts + words + [t.prompt for t in TASKS.values()] + PREFIXES, family, out_dir)
    # no dropout: the corpus is large and fresh, and CPU dropout costs a third of a step
    model = build_vl_model(BackboneConfig(arch=cfg.arch, tokenizer=str(out_dir), feat_dim=cfg.feat_dim, dropout=0.0))
    tok = model.tokenizer
    train = cfg.optimisation()
    optimizer, schedule = build_optimizer(model, train, cfg.steps)
    rng = np.random.default_rng(cfg.seed)
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(1, cfg.steps + 1):
        if rng.random() < cfg.pair_share:
            batch = [doubles[i] for i in rng.integers(0, len(doubles), cfg.batch_size)]
            images = feats[[[a, b] for a, b, _, _ in batch]]  # [B, 2, 49, F]
        else:
            batch = [singles[i] for i in rng.integers(0, len(singles), cfg.batch_size)]
            images = feats[[i for i, *_ in batch]]
        src = tok([e[-2] for e in batch], padding=True, return_tensors="pt")
        tgt = tok([e[-1] for e in batch], padding=True, return_tensors="pt")
        labels = tgt.input_ids.masked_fill(tgt.attention_mask == 0, -100)
        logits = model(VLInputs(src.input_ids, src.attention_mask, torch.from_numpy(images)), labels=labels).logits
        loss = task_loss(logits, labels, torch.ones(len(batch)), EXAMPLE_LOSS)
        optimizer_step(model, loss, optimizer, schedule, train.clip_grad_norm)
        running += loss.item()
        if step % log_every == 0:
            print(f"pretrain step {step}/{cfg.steps} loss {running / log_every:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            running = 0.0
    save_vl_pretrained(model, out_dir)
    (out_dir / "pretraining.json").write_text(json.dumps({**asdict(cfg), "seconds": time.perf_counter() - start}))
    return out_dir


@entry_point
def main() -> None:
    """CLI: pre-train an embedded backbone into a directory."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--arch", default=PretrainConfig.arch, choices=[a for a in PRESETS if a.startswith(("tiny", "mini"))])
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps)
    args = parser.parse_args()
    pretrain(args.out_dir, PretrainConfig(arch=args.arch, steps=args.steps))


if __name__ == "__main__":
    sys.exit(main())
