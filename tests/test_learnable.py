"""PET methods learn the embedded benchmarks, as the paper's premise needs: at the embedded study's default
settings (the first value of every choice in studies/configs/embedded*.yaml) and its epoch budget,
VL-PET-large, VL-Adapter and LoRA beat the best constant answer on VQA, GQA and NLVR2 by 10 points or
more, caption most images with something other than their most common caption, and VL-PET-large reaches
90 % of full fine-tuning's average score with at most a fifth of its trainable parameters. The same for
VL-PET-large on the mini VL-T5 and on the video QA tasks.

Each run trains for the study's epochs and evaluates once, at the end. Measured figures: README
("Embedded benchmark") and the issue notes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from studies.study_config import load_study
from vlpet.checkpoint import load_pet_model
from vlpet.data import DataConfig, build_dataset, build_loader, get_task
from vlpet.data.synthetic import SyntheticConfig, ensure_benchmark
from vlpet.data.synthetic_video import SyntheticVideoConfig, ensure_video_benchmark
from vlpet.train.evaluate import constant_baselines, predict
from vlpet.train.loop import run_training

CONFIGS = Path(__file__).resolve().parents[1] / "studies" / "configs"
MARGIN = 10.0  # points above the best constant answer


def train(config: str, variant: str, root: Path, tasks: list[str] | None = None) -> tuple[dict, list[str]]:
    """Train a variant at its embedded default setting; returns the final metrics and, when the run has
    captions, the caption predicted for every validation image."""
    study = load_study(CONFIGS / config)
    spec = study.first_spec(variant)
    data = {"root": str(root), **({"tasks": tasks} if tasks else {})}
    spec = spec.replace(data=data, train={"eval_every": spec.train.epochs, "log_every": 10**6})
    captions: list[str] = []

    def report(metrics: dict, checkpoint: Path | None) -> None:
        if metrics["epoch"] == spec.train.epochs and "caption" in spec.data.tasks:
            captions.extend(predict_captions(checkpoint, spec))

    return run_training(spec, report), captions


def predict_captions(checkpoint: Path, spec) -> list[str]:
    """The captions that the checkpointed model writes for the validation images."""
    model = load_pet_model(checkpoint).eval()
    task = get_task("caption")
    loader = build_loader(spec.data, build_dataset(spec.data, task, "val", spec.backbone.feat_dim), model.tokenizer, "val")
    model.set_task("caption")
    return [c for batch in loader for c in predict(model, batch, task, model.tokenizer, spec.decode)]


def assert_learns(name: str, metrics: dict, constants: dict[str, float], tasks: list[str]) -> None:
    for task in tasks:
        assert metrics[f"score_{task}"] >= constants[task] + MARGIN, (name, task, metrics[f"score_{task}"], constants)


def assert_close_to_full(pet: dict, full: dict) -> None:
    assert pet["score"] >= 0.9 * full["score"], (pet["score"], full["score"])
    assert pet["params"] <= full["params"] / 5, (pet["params"], full["params"])


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    return ensure_benchmark(tmp_path_factory.mktemp("learnable") / "data", SyntheticConfig())


@pytest.mark.slow
def test_pet_methods_learn_every_image_task_on_the_mini_vl_bart(image_root):
    constants = constant_baselines(DataConfig(root=str(image_root)))
    runs = {v: train("embedded.yaml", v, image_root) for v in ("full", "vlpet-large", "adapter", "lora")}
    for variant in ("vlpet-large", "adapter", "lora"):
        metrics, captions = runs[variant]
        assert_learns(variant, metrics, constants, ["vqa", "gqa", "nlvr"])
        most_common = Counter(captions).most_common(1)[0][1]
        assert len(captions) == 100 and most_common < len(captions) / 2, (variant, Counter(captions).most_common(3))
    assert_close_to_full(runs["vlpet-large"][0], runs["full"][0])


@pytest.mark.slow
def test_vlpet_large_learns_every_image_task_on_the_mini_vl_t5(image_root):
    constants = constant_baselines(DataConfig(root=str(image_root)))
    (pet, captions), (full, _) = (train("embedded_t5.yaml", v, image_root) for v in ("vlpet-large", "full"))
    assert_learns("t5 vlpet-large", pet, constants, ["vqa", "gqa", "nlvr"])
    assert Counter(captions).most_common(1)[0][1] < len(captions) / 2
    assert_close_to_full(pet, full)


@pytest.mark.slow
def test_vlpet_large_learns_the_video_qa_tasks(tmp_path):
    root = ensure_video_benchmark(tmp_path / "video", SyntheticVideoConfig())
    tasks = ["tvqa", "how2qa"]
    constants = constant_baselines(DataConfig(root=str(root), tasks=tasks))
    (pet, _), (full, _) = (train("embedded_video.yaml", v, root, tasks) for v in ("vlpet-large", "full"))
    assert_learns("video vlpet-large", pet, constants, tasks)
    assert_close_to_full(pet, full)
