"""The embedded video benchmark: small, learnable synthetic TVQA / How2QA / TVC / YC2C data written in
exactly the paper's video layout (spec 7; file names and keys in `vlpet.data.tasks`), so the real
loaders read it unchanged.

A video shows 2-4 objects of the image benchmark's world (a colour and a shape; distinct colours and
distinct shapes within a video) one after another. Each object is visible during one contiguous run of
frames, after a short blank gap. A frame's feature is `World.noise` plus `World.object_code` of the
object visible in it, so colours and shapes are readable from the frames and their order from the
frame positions. Videos have 40-96 frames (one per second), so the loader both zero-pads (T < 64) and
max-pools (T > 64). Subtitles, one line per object while it is visible, name only its shape
("look , a circle !"): colours must come from the frames.

Questions, with one correct choice at a uniformly random position among 5 (TVQA) or 4 (How2QA) choices,
so chance is 20 % / 25 %; `ts` is the window of the object asked about:

    what color is the <shape> ?              colour choices (other colours of the video among them)
    what shape is the <colour> object ?      shape choices
    what shape is the <first|second|…> object ?

Captions describe the sequence in order: YC2C the whole video ("a red circle, a blue star and a green
square"), TVC the object(s) inside its `ts` window (two descs per clip).

Feature size: configurable. The real CLIP-ViT frame features are 512-d; the embedded study uses 128,
the feature size of the packaged tiny VL-BART's visual projection (`backbone.pretrained: embedded`,
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

VIDEO_VERSION = 1  # bump when the generator's output changes, so cached benchmarks are rewritten
ORDINALS = ("first", "second", "third", "fourth")
# Subtitle lines per source; each names the shape on screen, never its colour.
SUBTITLE_LINES = {"tv": ("look , a {} !", "now the {} ."), "how2": ("take the {} .", "next , the {} ."),
                  "yc2": ("add the {} .", "then the {} .")}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SyntheticVideoConfig:
    """Sizes of the embedded video benchmark and its frame feature size.

    Attributes:
        seed: seed of the world (colour/shape codes) and of every draw.
        feat_dim: frame feature size (real CLIP-ViT: 512; the embedded backbone: 128).
        frames: inclusive range of frames per video (the loader pads/pools to 64).
        videos: videos per source (tv, how2, yc2) in train / val / test.
        questions_per_video: TVQA / How2QA questions per video.
    """

    seed: int = 0
    feat_dim: int = 128
    frames: tuple[int, int] = (40, 96)
    videos: tuple[int, int, int] = (120, 24, 24)
    questions_per_video: int = 3


class Event(NamedTuple):
    """One object on screen during frames [start, end); unpacks like `synthetic.Obj` (colour, shape, a, b),
    so `describe` reads it."""

    color: str
    shape: str
    start: int
    end: int


def video_events(rng: random.Random, n_frames: int) -> list[Event]:
    """2-4 objects with distinct colours and shapes, each filling one equal segment after a 1-3 frame gap."""
    count = rng.randint(2, 4)
    segment = n_frames // count
    return [Event(color, shape, k * segment + rng.randint(1, 3), (k + 1) * segment)
            for k, (color, shape) in enumerate(zip(rng.sample(COLORS, count), rng.sample(SHAPES, count)))]


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


def video_question(rng: random.Random, events: list[Event], n_choices: int) -> tuple[str, list[str], int, Event]:
    """(question, choices, index of the correct choice, the object asked about)."""
    k = rng.randrange(len(events))
    event = events[k]
    kind = rng.choice(("color", "shape", "order"))
    if kind == "color":
        question, answer, pool = f"what color is the {event.shape} ?", event.color, COLORS
    else:
        subject = f"{event.color} object" if kind == "shape" else f"{ORDINALS[k]} object"
        question, answer, pool = f"what shape is the {subject} ?", event.shape, SHAPES
    chosen = {answer, *rng.sample([p for p in pool if p != answer], n_choices - 1)}
    choices = [p for p in pool if p in chosen]  # in the world's order: see the module docstring
    return question, choices, choices.index(answer), event


def _window(e: Event) -> str:
    return f"{e.start:.1f}-{e.end:.1f}"


def _qa_rows(rng: random.Random, vid: str, events: list[Event], n_choices: int, count: int,
             qids: itertools.count, extra: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for _ in range(count):
        question, choices, index, event = video_question(rng, events, n_choices)
        rows.append({"qid": next(qids), "vid_name": vid, **extra, "q": question,
                     **{f"a{k}": c for k, c in enumerate(choices)}, "answer_idx": index, "ts": _window(event)})
    return rows


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
                events = video_events(rng, n_frames)
                write_npz_features(root / feat_dir, vid, frame_features(world, events, n_frames))
                subs[source].append({"vid_name": vid, "sub": subtitles(rng, source, events)})
                if source == "tv":
                    anns["tvqa", split] += _qa_rows(rng, vid, events, 5, cfg.questions_per_video, ids,
                                                    {"show_name": "synthetic"})
                    anns["tvc", split].append(_tvc_row(rng, vid, events, n_frames, ids))
                elif source == "how2":
                    anns["how2qa", split] += _qa_rows(rng, vid, events, 4, cfg.questions_per_video, ids, {})
                else:
                    anns["yc2c", split].append(_yc2c_row(vid, events, n_frames, ids))
    for source, rows in subs.items():
        _dump_jsonl(root / VIDEO_SOURCES[source][0], rows)
    for (task, split), rows in anns.items():
        _dump_jsonl(root / VIDEO_ANN / task / f"{TASKS[task].splits[split][0]}.jsonl", rows)
    write_stamp(root, cfg, VIDEO_VERSION)
    return root


def ensure_video_benchmark(root: str | Path, cfg: SyntheticVideoConfig = SyntheticVideoConfig()) -> Path:
    """Generate the video benchmark under `root` unless the same configuration is already there (atomic,
    safe for concurrent callers; see `synthetic.ensure_generated`)."""
    return ensure_generated(root, cfg, generate_video, VIDEO_VERSION)
