"""The embedded benchmark: a small, learnable synthetic VL dataset written in exactly the paper's
on-disk formats, so the real loaders read it unchanged.

Each "image" is a 7x7 grid of feature vectors (HDF5 `<img_id>/features`, [49, feat_dim], float16).
Objects (a colour and a shape) sit in cells at rows/columns {0, 3, 6}, far enough apart that the
paper's 7x7 -> 6x6 max-pooling never merges two of them. A cell holding an object carries the sum
of a sparse non-negative colour code and a shape code; other cells carry small noise. Answers,
captions and NLVR2 statements are functions of the objects, so a model must read the features to
score above chance. Everything is deterministic given the seed.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlpet.data.features import write_h5_features
from vlpet.data.tasks import COCO_FEATS, GQA_FEATS, NLVR_FEATS, VG_FEATS
from vlpet.errors import ConfigError

COLORS = ("red", "blue", "green", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star", "cross")
SLOTS = [(r, c) for r in (0, 3, 6) for c in (0, 3, 6)]
NUMBER_WORDS = ("zero", "one", "two", "three", "four")
STAMP = "embedded_benchmark.json"
VERSION = 4  # bump when the generator's output changes, so cached benchmarks are rewritten


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes of the embedded benchmark (images per split) and its feature size."""

    seed: int = 0
    feat_dim: int = 128
    coco_train: int = 240
    # validation sets of 300 questions, 200 statements and 100 images: at 60 examples (the earlier size) one
    # seed's NLVR2 accuracy moved by +-6 points, more than most differences between methods
    coco_eval: int = 100  # Karpathy val and test each
    vg_images: int = 160  # GQA train/valid
    gqa_testdev: int = 100
    nlvr_images: int = 200
    # NLVR2 statements compose two reads (of both images, or a count and a comparison): with 480 training
    # pairs full fine-tuning stayed at 54-60 % and PET at chance after 4 epochs; 1200 pairs: 74 % and 65 %
    nlvr_pairs: tuple[int, int, int] = (1200, 200, 200)  # train / valid / test
    questions_per_image: int = 3


Obj = tuple[str, str, int, int]  # colour, shape, row, column


# Seed of the colour/shape codes: the world's "feature extractor". It is one for every benchmark seed
# and for the embedded backbones' pre-training, as CLIP is one for pre-training and downstream data; a
# backbone pre-trained on other codes would have to relearn how every object looks.
CODE_SEED = 0


class World:
    """Draws scenes (from `seed`) and renders their features from the fixed colour/shape codes."""

    def __init__(self, seed: int, feat_dim: int):
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        codes = np.random.default_rng(CODE_SEED)
        code = lambda: (codes.random(feat_dim) < 0.15).astype(np.float32) * codes.uniform(0.5, 1.5, feat_dim)
        self.color_code = {c: code() for c in COLORS}
        self.shape_code = {s: code() for s in SHAPES}
        self.feat_dim = feat_dim

    def scene(self) -> list[Obj]:
        """1-3 objects in distinct slots, sorted in reading order."""
        slots = self.rng.sample(SLOTS, self.rng.randint(1, 3))
        return sorted(((self.rng.choice(COLORS), self.rng.choice(SHAPES), r, c) for r, c in slots), key=lambda o: o[2:])

    def noise(self, *shape: int) -> np.ndarray:
        """Small non-negative background noise of shape [*shape, feat_dim] (float32)."""
        return np.abs(self.np_rng.normal(0, 0.05, (*shape, self.feat_dim))).astype(np.float32)

    def object_code(self, color: str, shape: str) -> np.ndarray:
        """The feature vector an object adds where it is visible: its colour code plus its shape code."""
        return self.color_code[color] + self.shape_code[shape]

    def features(self, objects: list[Obj]) -> np.ndarray:
        """[49, feat_dim] float16 grid features of a scene."""
        grid = self.noise(7, 7)
        for color, shape, r, c in objects:
            grid[r, c] += self.object_code(color, shape)
        return grid.reshape(49, self.feat_dim).astype(np.float16)


def plural(noun: str) -> str:
    """English plural of a shape name."""
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def describe(objects: list[Obj]) -> str:
    """'a red circle, a blue star and a green square' in reading order."""
    parts = [f"a {c} {s}" for c, s, _, _ in objects]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def captions(objects: list[Obj]) -> list[str]:
    """Five reference captions of a scene (different frames, same content)."""
    d = describe(objects)
    n = len(objects)
    return [d, f"there is {d}", f"an image with {d}", f"a picture showing {d}",
            f"{NUMBER_WORDS[n]} object{'s' if n > 1 else ''} : {d}"]


def vqa_question(rng: random.Random, objects: list[Obj]) -> tuple[str, str, str]:
    """(question, answer, answer_type) about one scene."""
    colors = [o[0] for o in objects]
    shapes = [o[1] for o in objects]
    kind = rng.choice(("color", "shape", "count", "exists"))
    if kind == "color" and shapes.count(target := rng.choice(shapes)) == 1:
        return f"what color is the {target}?", colors[shapes.index(target)], "other"
    if kind == "shape" and colors.count(target := rng.choice(colors)) == 1:
        return f"what shape is the {target} object?", shapes[colors.index(target)], "other"
    if kind == "count":
        shape = rng.choice(SHAPES if rng.random() < 0.3 else shapes)
        return f"how many {plural(shape)} are there?", str(shapes.count(shape)), "number"
    color, shape = (rng.choice(COLORS), rng.choice(SHAPES)) if rng.random() < 0.5 else rng.choice(objects)[:2]
    return f"is there a {color} {shape}?", "yes" if (color, shape) in zip(colors, shapes) else "no", "yes/no"


def gqa_question(rng: random.Random, objects: list[Obj]) -> tuple[str, str]:
    """(question, answer) in GQA's compositional style."""
    kind = rng.choice(("which_shape", "relation", "both_colors"))
    colors = [o[0] for o in objects]
    if kind == "which_shape" and colors.count(target := rng.choice(colors)) == 1:
        return f"which shape is {target}?", objects[colors.index(target)][1]
    if kind == "relation" and len(objects) >= 2:
        a, b = rng.sample(objects, 2)
        if a[3] != b[3]:
            return f"is the {a[0]} {a[1]} to the left or to the right of the {b[0]} {b[1]}?", "left" if a[3] < b[3] else "right"
    c1, c2 = rng.sample(COLORS, 2) if rng.random() < 0.5 else (rng.choice(colors), rng.choice(COLORS))
    return f"are there both {c1} and {c2} objects?", "yes" if c1 in colors and c2 in colors else "no"


def nlvr_statement(rng: random.Random, left: list[Obj], right: list[Obj]) -> tuple[str, bool]:
    """(statement, truth) about an image pair."""
    kind = rng.choice(("left_has", "both_have", "more", "exactly"))
    if kind == "left_has":
        color, shape = rng.choice(left)[:2] if rng.random() < 0.5 else (rng.choice(COLORS), rng.choice(SHAPES))
        return f"the left image contains a {color} {shape}", any(o[:2] == (color, shape) for o in left)
    if kind == "both_have":
        shape = rng.choice(SHAPES)
        return f"both images contain a {shape}", any(o[1] == shape for o in left) and any(o[1] == shape for o in right)
    if kind == "more":
        return "the left image has more objects than the right image", len(left) > len(right)
    n = rng.randint(1, 3)
    return f"the right image contains exactly {NUMBER_WORDS[n]} objects", len(right) == n


def _human_answers(rng: random.Random, answer: str, pool: list[str]) -> list[str]:
    """Ten annotator answers: mostly the true answer, sometimes a confusable one."""
    n_right = rng.choice((10, 10, 9, 8, 7))
    return [answer] * n_right + [rng.choice([p for p in pool if p != answer]) for _ in range(10 - n_right)]


def _soft_label(answers: list[str]) -> dict[str, float]:
    """LXMERT-style soft score of each distinct answer: min(1, 0.3 x count) (count >= 4 -> 1)."""
    return {a: min(1.0, 0.3 * answers.count(a)) if answers.count(a) < 4 else 1.0 for a in dict.fromkeys(answers)}


def _dump(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def generate(root: str | Path, cfg: SyntheticConfig = SyntheticConfig()) -> Path:
    """Write the benchmark under `root` in the paper's layout; returns the root."""
    root = Path(root)
    world = World(cfg.seed, cfg.feat_dim)
    rng = world.rng
    for d in (COCO_FEATS, VG_FEATS, GQA_FEATS, NLVR_FEATS):
        (root / d).mkdir(parents=True, exist_ok=True)

    def render(feat_dir: str, img_id: str) -> list[Obj]:
        objects = world.scene()
        write_h5_features(root / feat_dir, img_id, world.features(objects))
        return objects

    # COCO images: Karpathy captions + VQA questions (train images serve both, as in COCO)
    karpathy, vqa = [], {"karpathy_train": [], "karpathy_val": [], "karpathy_test": []}
    official: dict[str, list[dict]] = {"train2014": [], "val2014": []}  # annotations by the image's COCO year
    qid = 1
    answer_pools = {"other": list(COLORS + SHAPES), "number": ["0", "1", "2", "3"], "yes/no": ["yes", "no"]}
    splits = [("train", cfg.coco_train), ("val", cfg.coco_eval), ("test", cfg.coco_eval)]
    for split, count in splits:
        for i in range(count):
            year = "train2014" if split == "train" else "val2014"
            img_id = f"COCO_{year}_{len(karpathy):012d}"
            objects = render(COCO_FEATS, img_id)
            karpathy.append({"filename": f"{img_id}.jpg", "split": split, "imgid": len(karpathy),
                             "sentences": [{"raw": c, "tokens": c.split()} for c in captions(objects)]})
            for _ in range(cfg.questions_per_image):
                question, answer, a_type = vqa_question(rng, objects)
                answers = _human_answers(rng, answer, answer_pools[a_type])
                vqa[f"karpathy_{split}"].append({"img_id": img_id, "question_id": qid, "sent": question,
                                                 "label": _soft_label(answers), "answer_type": a_type,
                                                 "question_type": " ".join(question.split()[:2])})
                official[year].append({"question_id": qid, "image_id": i, "answer_type": a_type,
                                       "multiple_choice_answer": answer,
                                       "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1}
                                                   for k, a in enumerate(answers)]})
                qid += 1
    _dump(root / "COCO" / "dataset_coco.json", {"images": karpathy, "dataset": "coco"})
    for name, entries in vqa.items():
        _dump(root / "vqa" / f"{name}.json", entries)
    for year, entries in official.items():
        _dump(root / "vqa" / f"v2_mscoco_{year}_annotations.json", {"annotations": entries, "data_subtype": year})

    # GQA: train/valid on VG images, testdev on GQA images
    gqa = {"train": [], "valid": [], "testdev": []}
    for name, feat_dir, count in (("train", VG_FEATS, cfg.vg_images), ("testdev", GQA_FEATS, cfg.gqa_testdev)):
        for i in range(count):
            img_id = f"{name}{i:06d}"
            objects = render(feat_dir, img_id)
            split = name if name == "testdev" else ("valid" if i % 8 == 0 else "train")
            for k in range(cfg.questions_per_image):
                question, answer = gqa_question(rng, objects)
                gqa[split].append({"img_id": img_id, "question_id": f"{img_id}_{k}", "sent": question, "label": {answer: 1.0}})
    for name, entries in gqa.items():
        _dump(root / "GQA" / f"{name}.json", entries)

    # NLVR2: statements over pairs drawn from a pool of images
    pool = {f"nlvr{i:06d}": render(NLVR_FEATS, f"nlvr{i:06d}") for i in range(cfg.nlvr_images)}
    ids = list(pool)
    for name, count in zip(("train", "valid", "test"), cfg.nlvr_pairs):
        entries = []
        for i in range(count):
            want = rng.random() < 0.5  # balanced labels: redraw until the statement has the wanted truth
            for _ in range(50):
                left, right = rng.sample(ids, 2)
                sent, truth = nlvr_statement(rng, pool[left], pool[right])
                if truth == want:
                    break
            entries.append({"identifier": f"{name}-{i}-0-0", "img0": left, "img1": right, "label": int(truth),
                            "sent": sent, "uid": f"{name}-{i}"})
        _dump(root / "nlvr" / f"{name}.json", entries)

    write_stamp(root, cfg, VERSION)
    return root


def benchmark_texts(root: str | Path) -> list[str]:
    """Every question, answer, caption and statement of a generated benchmark (tokenizer corpus)."""
    root = Path(root)
    texts: list[str] = []
    for name in ("karpathy_train", "karpathy_val", "karpathy_test"):
        for e in json.loads((root / "vqa" / f"{name}.json").read_text()):
            texts += [e["sent"], *e["label"]]
    for name in ("train", "valid", "testdev"):
        for e in json.loads((root / "GQA" / f"{name}.json").read_text()):
            texts += [e["sent"], *e["label"]]
    for name in ("train", "valid", "test"):
        texts += [e["sent"] for e in json.loads((root / "nlvr" / f"{name}.json").read_text())]
    for img in json.loads((root / "COCO" / "dataset_coco.json").read_text())["images"]:
        texts += [s["raw"] for s in img["sentences"]]
    return texts + ["true", "false"]


def ensure_benchmark(root: str | Path, cfg: SyntheticConfig = SyntheticConfig()) -> Path:
    """Generate the benchmark under `root` unless the same configuration is already there."""
    return ensure_generated(root, cfg, generate, VERSION)


def ensure_generated(root: str | Path, cfg: Any, generator: Callable[[Path, Any], Path], version: int) -> Path:
    """Run `generator(dir, cfg)` for `root` unless `root` holds the stamp of the same `cfg` and `version`
    (the generator writes that stamp with `write_stamp`).

    Safe when several processes call it at once (Ray workers on one node): each writes into its own
    temporary directory and the first atomic rename wins.
    """
    root = Path(root)
    if _current(root, cfg, version):
        return root
    check_generator_owns(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    generator(tmp, cfg)
    if root.exists() and not _current(root, cfg, version):
        shutil.rmtree(root, ignore_errors=True)  # an older or different benchmark (or an empty directory)
    try:
        tmp.rename(root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def check_generator_owns(root: str | Path) -> None:
    """`root` may be (re)generated: it is new, empty, or a benchmark this generator wrote (its stamp).
    Never anything else, so a data.root that points at a user's files is refused, not replaced."""
    root = Path(root)
    if root.exists() and not (root / STAMP).is_file() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"data.root={str(root)!r} holds files the synthetic benchmark generator did not write (no "
                          f"{STAMP}); with data.synthetic: true it generates into data.root: point data.root at a new "
                          "or empty directory, or set synthetic: false to read that directory as real data")


def write_stamp(root: Path, cfg: Any, version: int) -> None:
    """Record which generator configuration and version produced the benchmark under `root`."""
    _dump(root / STAMP, {**asdict(cfg), "version": version})


def _current(root: Path, cfg: Any, version: int) -> bool:
    stamp = root / STAMP
    return stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps({**asdict(cfg), "version": version}))
