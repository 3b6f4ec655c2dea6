"""The training loop and its Ray Train wrapper on CPU with a local Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import SMALL
from vlpet.checkpoint import WEIGHTS
from vlpet.errors import ConfigError
from vlpet.train.config import RunSpec
from vlpet.train.loop import STATE_FILE, copy_checkpoint, run_training


def small_spec(bench: Path, tokenizer_dir: Path, **train) -> RunSpec:
    return RunSpec.from_dict({
        "backbone": {"arch": "tiny-bart", "tokenizer": str(tokenizer_dir), "feat_dim": SMALL.feat_dim, "n_boxes": 4},
        "method": {"method": "vlpet", "granularity": "large", "rank": 16, "decoder_rank": 8},
        "data": {"root": str(bench), "batch_size": 6, "eval_batch_size": 16},
        "train": {"epochs": 2, "lr": 1e-3, "log_every": 1000, **train},
        "decode": {"num_beams": 2},
    })


class Stop(Exception):
    """Raised by a reporter to simulate a process killed right after an epoch's checkpoint."""


def test_resumed_run_ends_with_the_same_weights(bench, tokenizer_dir, tmp_path):
    spec = small_spec(bench, tokenizer_dir, epochs=3)
    finals = {}

    def keep_last(metrics, ckpt):
        finals["full"] = dict(metrics)
        copy_checkpoint(ckpt, tmp_path / "full")

    run_training(spec, keep_last)

    def stop_after_first(metrics, ckpt):
        copy_checkpoint(ckpt, tmp_path / "epoch1")
        raise Stop

    with pytest.raises(Stop):
        run_training(spec, stop_after_first)
    assert torch.load(tmp_path / "epoch1" / STATE_FILE, weights_only=True)["epoch"] == 1
    seen = []
    run_training(spec, lambda m, c: (seen.append(m["epoch"]), copy_checkpoint(c, tmp_path / "resumed")),
                 resume_dir=tmp_path / "epoch1")
    assert seen == [2, 3]
    full, resumed = load_file(str(tmp_path / "full" / WEIGHTS)), load_file(str(tmp_path / "resumed" / WEIGHTS))
    assert full.keys() == resumed.keys()
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=0, msg=name)
    assert finals["full"]["params"] > 0 and 0 < finals["full"]["params_pct"] < 100


def test_nan_loss_stops_with_a_reason(bench, tokenizer_dir):
    spec = small_spec(bench, tokenizer_dir, lr=1e6, clip_grad_norm=0.0, epochs=3)
    from vlpet.train.loop import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"loss became (nan|inf) at epoch \d+, step \d+ .*lower train.lr"):
        run_training(spec, lambda m, c: None)


@pytest.mark.slow
def test_trainer_runs_report_metrics_on_one_and_two_workers_and_a_rerun_resumes(ray_local, bench, tokenizer_dir,
                                                                                tmp_path):
    """One worker for an epoch; the same run name with 2 epochs resumes at epoch 2; two workers (DDP), whose
    trainable weights are compared after the epoch by the loop itself (`check_replicas_in_step`: a run whose
    workers drift apart fails)."""
    from vlpet.train.ray_trainer import fit_run

    for workers in (1, 2):
        spec = small_spec(bench, tokenizer_dir, epochs=1, num_workers=workers)
        result = fit_run(spec, tmp_path, f"run{workers}")
        m = result.metrics
        assert m["world_size"] == workers
        assert {"score", "score_vqa", "score_gqa", "score_nlvr", "score_caption", "params", "params_pct"} <= m.keys()
        assert result.checkpoint is not None and (Path(result.checkpoint.path) / WEIGHTS).is_file()
        if workers == 1:
            resumed = fit_run(small_spec(bench, tokenizer_dir, epochs=2), tmp_path, "run1")
            kept = {metrics["epoch"]: metrics for _, metrics in resumed.best_checkpoints}
            assert sorted(kept) == [1, 2]
            # only epoch 2 ran: epoch 1's checkpoint is still the first run's, from its worker process
            assert kept[1]["worker_started_at"] == m["worker_started_at"], "epoch 1 was trained again"
            assert kept[2]["worker_started_at"] > m["worker_started_at"]


def test_gpu_request_without_gpus_fails_before_workers_start(ray_local, bench, tokenizer_dir, tmp_path):
    from vlpet.train.ray_trainer import fit_run

    with pytest.raises(ConfigError, match=r"needs 1 GPUs but the Ray cluster has 0; set train.gpus_per_worker: 0"):
        fit_run(small_spec(bench, tokenizer_dir, gpus_per_worker=1), tmp_path, "gpu")
    assert not (tmp_path / "gpu").exists()


def test_bad_train_values_name_the_field(bench, tokenizer_dir):
    with pytest.raises(ConfigError, match="train.lr"):
        small_spec(bench, tokenizer_dir, lr=-1.0)
    with pytest.raises(ConfigError, match="train.precision"):
        small_spec(bench, tokenizer_dir, precision="fp8")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        small_spec(bench, tokenizer_dir, epoch=3)
    with pytest.raises(ConfigError, match="train.runner='worker'.*did you mean 'workers'"):
        small_spec(bench, tokenizer_dir, runner="worker")
    with pytest.raises(ConfigError, match="train.runner=trial .* num_workers=2; set runner: workers"):
        small_spec(bench, tokenizer_dir, runner="trial", num_workers=2)


def test_the_runner_defaults_to_the_trial_process_for_one_worker(bench, tokenizer_dir):
    assert small_spec(bench, tokenizer_dir).train.in_trial_process
    assert not small_spec(bench, tokenizer_dir, num_workers=2).train.in_trial_process
    assert not small_spec(bench, tokenizer_dir, runner="workers").train.in_trial_process


def test_schedule_equals_the_papers_transformers_schedule():
    """The warm-up/decay multipliers equal transformers' get_linear_schedule_with_warmup at every step."""
    from transformers import get_linear_schedule_with_warmup

    from vlpet.train.loop import linear_warmup_decay

    def lrs(make) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = make(opt, 7, 50)
        out = []
        for _ in range(55):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    assert lrs(linear_warmup_decay) == pytest.approx(lrs(get_linear_schedule_with_warmup), abs=1e-12)


def test_a_per_task_run_trains_reports_its_params_and_reloads_to_the_same_scores(bench, tokenizer_dir, tmp_path):
    """VL-PET with one set of modules per task (shared: false) on the benchmark: it trains, counts the
    modules of every task, and its adapter-only checkpoint scores every task exactly as the run reported."""
    from vlpet.checkpoint import load_pet_model
    from vlpet.data import build_dataset, build_loader, get_task
    from vlpet.methods.layers import PerTask
    from vlpet.params import config_report
    from vlpet.train.evaluate import evaluate

    shared = small_spec(bench, tokenizer_dir, epochs=1)
    spec = RunSpec.from_dict({**shared.to_dict(), "method": {**shared.method.to_dict(), "shared": False,
                                                              "tasks": list(shared.data.tasks)}})
    reports = []
    run_training(spec, lambda m, c: (reports.append(dict(m)), copy_checkpoint(c, tmp_path / "ckpt")))
    (report,) = reports
    one = config_report(shared.backbone, shared.method)
    assert report["params"] == config_report(spec.backbone, spec.method).trainable > one.trainable
    pet_modules = sum(t for g, (t, _) in one.groups.items() if "pet" in g.lower())  # the shared run's modules
    assert report["params"] - one.trainable == (len(spec.data.tasks) - 1) * pet_modules > 0  # one more set per task
    model = load_pet_model(tmp_path / "ckpt")
    per_task = [m for m in model.modules() if isinstance(m, PerTask)]
    assert per_task and all(list(m.pet_by_task) == list(spec.data.tasks) for m in per_task)
    feat_dim = spec.backbone.feat_dim
    loaders = {name: build_loader(spec.data, build_dataset(spec.data, get_task(name), "val", feat_dim), model.tokenizer,
                                  "val") for name in spec.data.tasks}
    scores = evaluate(model, loaders, model.tokenizer, decode=spec.decode)
    assert scores == {t: report[f"score_{t}"] for t in spec.data.tasks}
