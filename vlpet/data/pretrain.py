"""VL pre-training of the embedded tiny VL-BART, so PET studies start from a pretrained backbone as
the paper's do (a frozen random backbone cannot be tuned in CPU minutes).

The pre-training world is the benchmark's (same colour/shape codes) but its images, sentences and
objectives are disjoint from the downstream tasks:

    "objects: " -> "red circle top left , blue star bottom right"   grounded listing with positions
    "slots: "   -> "red circle (0) , blue star (8)"                 the same with slot numbers (reading order)
    "count: "   -> "two"                                            object count
    text infilling (BART's objective) of questions, statements and captions, over a blank image

so the backbone knows the vocabulary and how objects look, but not the downstream task formats. The
slot numbers are there so that it knows digits as distinct tokens, as any real pre-trained model does:
video QA answers "aK" with a digit, and with the never-seen (hence near-identical) digit embeddings of a
backbone pre-trained without them, a tiny model stayed at the answer prior for hundreds of steps.

    python -m vlpet.data.pretrain OUT_DIR      # writes the backbone, tokenizer and visual embedding
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vlpet.data.synthetic import NUMBER_WORDS, SLOTS, World, captions, gqa_question, nlvr_statement, vqa_question
from vlpet.data.tasks import TASKS
from vlpet.data.tokenizer import train_tokenizer
from vlpet.models import BackboneConfig, VLInputs, build_vl_model
from vlpet.models.vl_model import save_vl_pretrained
from vlpet.train.loop import seed_everything

ROWS = {0: "top", 3: "middle", 6: "bottom"}
COLS = {0: "left", 3: "center", 6: "right"}


@dataclass(frozen=True)
class PretrainConfig:
    """Size and optimisation of the embedded backbone's pre-training."""

    seed: int = 1234
    feat_dim: int = 128
    images: int = 4000
    steps: int = 3000
    batch_size: int = 48
    lr: float = 1e-3
    arch: str = "tiny-bart"


def _listing(objects: list) -> str:
    return " , ".join(f"{c} {s} {ROWS[r]} {COLS[col]}" for c, s, r, col in objects)


def _slots(objects: list) -> str:
    # "(4)", not "4": the digit is then the same word-internal token as in a video QA answer "a4"
    return " , ".join(f"{c} {s} ({SLOTS.index((r, col))})" for c, s, r, col in objects)


def _infill(rng: random.Random, text: str) -> str:
    """Replace one random span of 1-3 words by <mask> (BART's text infilling)."""
    words = text.split()
    start = rng.randrange(len(words))
    return " ".join(words[:start] + ["<mask>"] + words[start + rng.randint(1, 3):])


def make_corpus(cfg: PretrainConfig) -> tuple[np.ndarray, list[tuple[int, str, str]], list[str]]:
    """Features of the pre-training images, (image index, source, target) pairs, and all texts."""
    world = World(cfg.seed, cfg.feat_dim)
    rng = world.rng
    scenes = [world.scene() for _ in range(cfg.images)]
    feats = np.stack([world.features(s) for s in scenes]).astype(np.float32)
    blank = len(scenes)  # index of the all-zero image used by text-only examples
    feats = np.concatenate([feats, np.zeros((1, *feats.shape[1:]), np.float32)])
    pairs, texts = [], []
    for i, objects in enumerate(scenes):
        other = scenes[rng.randrange(len(scenes))]
        sentences = [vqa_question(rng, objects)[0], gqa_question(rng, objects)[0],
                     nlvr_statement(rng, objects, other)[0], rng.choice(captions(objects))]
        texts += sentences
        pairs += [(i, "objects: ", _listing(objects)), (i, "slots: ", _slots(objects)),
                  (i, "count: ", NUMBER_WORDS[len(objects)])]
        pairs += [(blank, _infill(rng, s), s) for s in sentences]
    return feats, pairs, texts


def pretrain(out_dir: str | Path, cfg: PretrainConfig = PretrainConfig(), log_every: int = 250) -> Path:
    """Train the tokenizer and the tiny VL-BART on the pre-training corpus and save both to `out_dir`."""
    out_dir = Path(out_dir)
    seed_everything(cfg.seed)
    feats, pairs, texts = make_corpus(cfg)
    words = ["true", "false", "yes", "no", "left", "right", *NUMBER_WORDS, *(str(n) for n in range(10))]
    train_tokenizer(texts + words + [t.prompt for t in TASKS.values()] + ["objects: ", "slots: ", "count: "], "bart", out_dir)
    # no dropout: the corpus is large and fresh, and CPU dropout costs a third of a step
    model = build_vl_model(BackboneConfig(arch=cfg.arch, tokenizer=str(out_dir), feat_dim=cfg.feat_dim, dropout=0.0))
    tok = model.tokenizer
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, eps=1e-6, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / (0.05 * cfg.steps)) * max(0.0, 1 - s / cfg.steps))
    rng = np.random.default_rng(cfg.seed)
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(1, cfg.steps + 1):
        batch = [pairs[i] for i in rng.integers(0, len(pairs), cfg.batch_size)]
        src = tok([s for _, s, _ in batch], padding=True, return_tensors="pt")
        tgt = tok([t for _, _, t in batch], padding=True, return_tensors="pt")
        labels = tgt.input_ids.masked_fill(tgt.attention_mask == 0, -100)
        inputs = VLInputs(src.input_ids, src.attention_mask, torch.from_numpy(feats[[i for i, _, _ in batch]]))
        loss = model(inputs, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        running += loss.item()
        if step % log_every == 0:
            print(f"pretrain step {step}/{cfg.steps} loss {running / log_every:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
            running = 0.0
    save_vl_pretrained(model, out_dir)
    (out_dir / "pretraining.json").write_text(json.dumps({**asdict(cfg), "seconds": time.perf_counter() - start}))
    return out_dir


def main() -> None:
    """CLI: pre-train the embedded backbone into a directory."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps)
    args = parser.parse_args()
    pretrain(args.out_dir, PretrainConfig(steps=args.steps))


if __name__ == "__main__":
    main()
