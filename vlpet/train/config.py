"""One training run's full configuration (backbone + method + data + optimisation + decoding), typed
and validated before anything starts, loadable from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from vlpet import yaml_loader
from vlpet.config_base import MAX_SEED, Config, bounded
from vlpet.data import DataConfig
from vlpet.errors import ConfigError, build_dataclass, closest
from vlpet.methods import MethodConfig, method_from_dict
from vlpet.methods.vlpet import VLPETConfig
from vlpet.models import BackboneConfig
from vlpet.models.backbones import EMBEDDED
from vlpet.train.evaluate import DecodeConfig

RUNNERS = ("auto", "trial", "workers")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation and scaling of one run (the paper's code: AdamW eps 1e-6, wd 0.01, 10 % linear
    warm-up then linear decay, grad-norm clip 5).

    Attributes:
        epochs, lr, warmup_ratio, weight_decay, adam_eps, clip_grad_norm: as the paper's flags.
        seed: seeds torch/numpy/random, data order and target sampling.
        precision: "auto" (bf16 autocast on GPU, fp32 on CPU), "bf16" or "fp32".
        num_workers: Ray Train workers (data-parallel DDP ranks) of this run.
        runner: how a study trial trains: "trial" in the Tune trial process itself (one worker, no worker
            group to start; the process and its imports serve the next trial), "workers" in a Ray Train
            TorchTrainer worker group (DDP), "auto" (default) the first when num_workers is 1.
        gpus_per_worker: GPUs per worker; 0 trains on CPU. Requests beyond the cluster fail before start.
        cpus_per_worker: CPUs reserved per worker.
        log_every: print progress every this many steps (rank 0).
        eval_every: validate every this many epochs (and always after the last).
    """

    section: ClassVar[str] = "train"

    epochs: int = bounded(20, ge=1)
    lr: float = bounded(1e-3, gt=0)
    warmup_ratio: float = bounded(0.1, ge=0, le=1.0)
    weight_decay: float = bounded(0.01, ge=0)
    adam_eps: float = bounded(1e-6, gt=0)
    clip_grad_norm: float = bounded(5.0, ge=0)
    seed: int = bounded(42, ge=0, le=MAX_SEED)
    precision: str = "auto"
    num_workers: int = bounded(1, ge=1)
    runner: str = "auto"
    gpus_per_worker: float = bounded(0.0, ge=0)
    cpus_per_worker: float = bounded(1.0, gt=0)
    log_every: int = bounded(50, ge=1)
    eval_every: int = bounded(1, ge=1)

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise self.error("precision", f"must be {', '.join(PRECISIONS)}")
        if self.runner not in RUNNERS:
            raise self.error("runner", f"must be one of {', '.join(RUNNERS)}{closest(str(self.runner), RUNNERS)}")
        if self.runner == "trial" and self.num_workers > 1:
            raise ConfigError(f"train.runner=trial trains one worker in the trial process, but num_workers="
                              f"{self.num_workers}; set runner: workers (or auto) for data-parallel runs")

    @property
    def in_trial_process(self) -> bool:
        """Whether a study trial trains in its own process rather than in a Ray Train worker group."""
        return self.runner == "trial" or (self.runner == "auto" and self.num_workers == 1)


@dataclass(frozen=True)
class RunSpec:
    """Everything one training run needs."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: MethodConfig = field(default_factory=VLPETConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def __post_init__(self) -> None:
        # task-conditioned modules (per-task modules, Hyperformer) need one for every task the run trains
        tasks = getattr(self.method, "tasks", None)
        conditioned = tasks is not None and not getattr(self.method, "shared", False)
        missing = [t for t in self.data.tasks if t not in tasks] if conditioned else []
        if missing:
            raise ConfigError(f"{self.method.method}.tasks={list(tasks)} has no modules for data.tasks {missing}; "
                              f"set {self.method.method}.tasks to {list(self.data.tasks)}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """Build from nested plain dicts (YAML), validating every section and key."""
        if not isinstance(data, dict):
            raise ConfigError(f"run config must be a mapping with sections {', '.join(RUN_SECTIONS)}")
        for key in data:
            if key not in RUN_SECTIONS:
                raise ConfigError(f"{key!r} is not a run config section{closest(str(key), RUN_SECTIONS)}; "
                                  f"valid: {', '.join(RUN_SECTIONS)}")
        parts = {name: build_dataclass(kind, data.get(name, {}) or {}, name) for name, kind in RUN_SECTIONS.items()
                 if name != "method"}
        method = data.get("method", {"method": "vlpet"})
        parts["method"] = method if isinstance(method, MethodConfig) else method_from_dict(method)
        return cls(**parts)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dicts (JSON/YAML-safe); `from_dict(to_dict())` gives an equal spec."""
        return {name: getattr(self, name).to_dict() for name in RUN_SECTIONS}

    def with_absolute_paths(self) -> RunSpec:
        """Relative data/tokenizer/pretrained paths made absolute against the current directory: Ray
        trials and workers run in directories of their own."""
        def absolute(path: str | None) -> str | None:
            if path is None or path in EMBEDDED or "://" in path:
                return path
            local = Path(path).expanduser()
            return str(local.resolve()) if local.is_absolute() or local.exists() or path.startswith(".") else path

        backbone = {"tokenizer": absolute(self.backbone.tokenizer), "pretrained": absolute(self.backbone.pretrained)}
        return self.replace(data={"root": str(Path(self.data.root).expanduser().resolve())}, backbone=backbone)

    def replace(self, **sections: Any) -> RunSpec:
        """A copy with some sections' fields changed, e.g. `replace(train={"lr": 1e-4})`, re-validated."""
        data = self.to_dict()
        for name, values in sections.items():
            data[name] = {**data[name], **values}
        return RunSpec.from_dict(data)


RUN_SECTIONS = {"backbone": BackboneConfig, "method": MethodConfig, "data": DataConfig, "train": TrainConfig,
                "decode": DecodeConfig}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML config file, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml_loader.load(path.read_text())
    except yaml_loader.DuplicateKeyError as err:
        raise ConfigError(f"{path}: line {err.problem_mark.line + 1}: {err.problem}; give each key once") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save the file as UTF-8") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data
