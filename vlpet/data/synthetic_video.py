"""The embedded video benchmark: small, learnable synthetic TVQA / How2QA / TVC / YC2C data written in
exactly the paper's video layout (file names and keys in `vlpet.data.tasks`), so the real
loaders read it unchanged.

A video shows 2-4 objects of the image benchmark's world (a colour and a shape; distinct colours and
distinct shapes within a video) one after another. One of them, the main object, stays on screen for
about three quarters of the video; the others share the rest. Each object is visible during one
contiguous run of frames, after a 1-2 frame gap, and a frame's feature is `World.noise` plus
`World.object_code` of the object visible in it, so colours, shapes, order and durations are all
readable from the frames. Videos have 40-96 frames (one per second), so the loader both zero-pads
(T < 64) and max-pools (T > 64). Subtitles, one line per object while it is visible, name only its
shape ("look , a circle !"): they tell which shapes occur, not which one stays longest, nor any colour.

Questions (TVQA / How2QA) ask for the main object's shape in a few wordings ("what shape is on screen
the longest ?"); `ts` is that object's window. The choices are the world's shapes in its order: all 5
for TVQA, the first 4 for How2QA (whose main objects are drawn from those 4). Main shapes are uniform,
so every answer position is about equally likely: chance is 20 % / 25 %. Why the fixed lists: the
answer is the digit of "aK", a token the embedded backbone never emitted in pre-training; one mapping
shape -> K shared by both tasks is learned by a tiny model in a few hundred steps, while choice lists
that change per question (K found by matching the seen shape against the listed texts) stayed at
chance for longer than a CPU test can run. With a shape-word target instead of "aK" the same
questions are learned in under 100 steps: reading the main object from the frames is the easy part.

Captions describe the sequence in order: YC2C the whole video ("a red circle, a blue star and a green
square"), TVC the object(s) inside its `ts` window (two descs per clip).

Feature size: configurable. The real CLIP-ViT frame features are 512-d; the embedded study uses 128,
the feature size of the packaged mini VL-BART's visual projection (`backbone.pretrained: embedded`,
`feat_dim: 128`). Everything is deterministic given the seed.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from vlpet.data.features import write_npz_features
from vlpet.data.synthetic import COLORS, SHAPES, World, describe, ensure_generated, write_stamp
from vlpet.data.tasks import TASKS, VIDEO_ANN, VIDEO_SOURCES
from vlpet.errors import ConfigError

VIDEO_VERSION = 4  # bump when the generator's output changes, so cached benchmarks are rewritten
QUESTIONS = ("what shape is on screen the longest ?", "which shape is shown the longest ?",
             "what shape do we see most of the time ?")
# Subtitle lines per source; each names the shape on screen, never its colour.
SUBTITLE_LINES = {"tv": ("look , a {} !", "now the {} ."), "how2": ("take the {} .", "next , the {} ."),
                  "yc2": ("add the {} .", "then the {} .")}
SPLITS = ("train", "val", "test")
QA_CHOICES = {"tv": 5, "how2": 4}  # TVQA, How2QA: the first n shapes of the world are the choices


@dataclass(frozen=True)
class SyntheticVideoConfig:
    """Sizes of the embedded video benchmark and its frame feature size.

    Attributes:
        seed: seed of the world (colour/shape codes) and of every draw.
        feat_dim: frame feature size (real CLIP-ViT: 512; the embedded backbone: 128).
        frames: inclusive range of frames per video (the loader pads/pools to 64).
        videos: videos per source (tv, how2, yc2) in train / val / test.
        questions_per_video: TVQA / How2QA questions per video (distinct wordings, at most 3).
    """

    seed: int = 0
    feat_dim: int = 128
    frames: tuple[int, int] = (40, 96)
    videos: tuple[int, int, int] = (120, 24, 24)
    questions_per_video: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.questions_per_video <= len(QUESTIONS):
            raise ConfigError(f"questions_per_video={self.questions_per_video} must be in 1..{len(QUESTIONS)} "
                              "(one question per wording)")


class Event(NamedTuple):
    """One object on screen during frames [start, end); unpacks like `synthetic.Obj` (colour, shape, a, b),
    so `describe` reads it."""

    color: str
    shape: str
    start: int
    end: int


def video_events(rng: random.Random, n_frames: int, main_shapes: tuple[str, ...] = SHAPES) -> list[Event]:
    """2-4 objects with distinct colours and shapes, one after another. The main one (its shape uniform
    over `main_shapes`, at a random place in the sequence) gets 3/4 of the frames, the others share the
    rest. Each starts after a 1-2 frame gap."""
    count = rng.randint(2, 4)
    main_shape = rng.choice(main_shapes)
    shapes = rng.sample([s for s in SHAPES if s != main_shape], count - 1)
    main = rng.randrange(count)
    shapes.insert(main, main_shape)
    weights = [3 * (count - 1) if k == main else 1 for k in range(count)]
    bounds = [n_frames * sum(weights[:k]) // sum(weights) for k in range(count + 1)]
    return [Event(color, shape, bounds[k] + rng.randint(1, 2), bounds[k + 1])
            for k, (color, shape) in enumerate(zip(rng.sample(COLORS, count), shapes))]


def frame_features(world: World, events: list[Event], n_frames: int) -> np.ndarray:
    """[n_frames, feat_dim] float16: background noise plus the code of the object visible in each frame."""
    frames = world.noise(n_frames)
    for e in events:
        frames[e.start:e.end] += world.object_code(e.color, e.shape)
    return frames.astype(np.float16)


def subtitles(rng: random.Random, source: str, events: list[Event]) -> list[dict[str, Any]]:
    """One subtitle line per object, timed with it (seconds = frames), naming its shape only."""
    return [{"start": float(e.start), "end": float(e.end), "text": rng.choice(SUBTITLE_LINES[source]).format(e.shape)}
            for e in events]


def main_event(events: list[Event]) -> Event:
    """The object on screen the longest: what every question asks about."""
    return max(events, key=lambda e: e.end - e.start)


def _window(e: Event) -> str:
    return f"{e.start:.1f}-{e.end:.1f}"


def _qa_rows(rng: random.Random, vid: str, events: list[Event], n_choices: int, count: int,
             qids: itertools.count, extra: dict[str, Any]) -> list[dict[str, Any]]:
    choices, event = SHAPES[:n_choices], main_event(events)
    listed = {f"a{k}": c for k, c in enumerate(choices)}
    return [{"qid": next(qids), "vid_name": vid, **extra, "q": question, **listed,
             "answer_idx": choices.index(event.shape), "ts": _window(event)}
            for question in rng.sample(QUESTIONS, count)]


def _tvc_row(rng: random.Random, vid: str, events: list[Event], n_frames: int, ids: itertools.count) -> dict[str, Any]:
    """A TVC clip: a window over one or two consecutive objects, described by two captions."""
    first = rng.randrange(len(events))
    shown = events[first:first + rng.randint(1, 2)]
    text = describe(shown)
    return {"vid_name": vid, "duration": float(n_frames), "ts": [float(shown[0].start), float(shown[-1].end)],
            "clip_id": next(ids), "descs": [{"desc": text, "desc_id": next(ids), "type": "v"},
                                            {"desc": f"there is {text}", "desc_id": next(ids), "type": "vt"}]}


def _yc2c_row(vid: str, events: list[Event], n_frames: int, ids: itertools.count) -> dict[str, Any]:
    """A YC2C clip: the whole sequence in order."""
    return {"vid_name": vid, "duration": float(n_frames), "clip_id": next(ids),
            "descs": [{"desc": describe(events), "desc_id": next(ids)}]}


def _dump_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def generate_video(root: str | Path, cfg: SyntheticVideoConfig = SyntheticVideoConfig()) -> Path:
    """Write the video benchmark under `root` (its `video/` tree) in the paper's layout; returns the root."""
    root = Path(root)
    world = World(cfg.seed, cfg.feat_dim)
    rng = world.rng
    subs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    anns: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    ids = itertools.count()
    for split, count in zip(SPLITS, cfg.videos):
        for source, (_, feat_dir) in VIDEO_SOURCES.items():
            (root / feat_dir).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                vid = f"{source}_{split}_{i:05d}"
                n_frames = rng.randint(*cfg.frames)
                events = video_events(rng, n_frames, SHAPES[:QA_CHOICES.get(source, len(SHAPES))])
                write_npz_features(root / feat_dir, vid, frame_features(world, events, n_frames))
                subs[source].append({"vid_name": vid, "sub": subtitles(rng, source, events)})
                if source == "tv":
                    anns["tvqa", split] += _qa_rows(rng, vid, events, QA_CHOICES[source], cfg.questions_per_video, ids,
                                                    {"show_name": "synthetic"})
                    anns["tvc", split].append(_tvc_row(rng, vid, events, n_frames, ids))
                elif source == "how2":
                    anns["how2qa", split] += _qa_rows(rng, vid, events, QA_CHOICES[source], cfg.questions_per_video, ids, {})
                else:
                    anns["yc2c", split].append(_yc2c_row(vid, events, n_frames, ids))
    for source, rows in subs.items():
        _dump_jsonl(root / VIDEO_SOURCES[source][0], rows)
    for (task, split), rows in anns.items():
        files = TASKS[task].splits[split]  # TVQA's test split is two files: each gets a contiguous share
        share = -(-len(rows) // len(files))
        for k, name in enumerate(files):
            _dump_jsonl(root / VIDEO_ANN / task / f"{name}.jsonl", rows[k * share:(k + 1) * share])
    write_stamp(root, cfg, VIDEO_VERSION)
    return root


def ensure_video_benchmark(root: str | Path, cfg: SyntheticVideoConfig = SyntheticVideoConfig()) -> Path:
    """Generate the video benchmark under `root` unless the same configuration is already there (atomic,
    safe for concurrent callers; see `synthetic.ensure_generated`)."""
    return ensure_generated(root, cfg, generate_video, VIDEO_VERSION)
