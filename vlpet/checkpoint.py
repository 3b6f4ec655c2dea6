"""Adapter-only checkpoints: the trainable tensors (safetensors, no pickle) plus the method and
backbone configs (JSON). Loading rebuilds the frozen backbone the same way and puts the tensors back."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vlpet.errors import ConfigError, build_dataclass
from vlpet.methods import apply_method, method_from_dict
from vlpet.models import BackboneConfig, VLModel, build_vl_model

WEIGHTS = "adapter.safetensors"
CONFIG = "pet_config.json"


def trainable_state(model: VLModel) -> dict[str, torch.Tensor]:
    """The trainable tensors by parameter name (tied tensors once), detached and contiguous on CPU."""
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_adapter(model: VLModel, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write `adapter.safetensors` (trainable tensors only) and `pet_config.json` into `directory`."""
    if model.method is None:
        raise ConfigError("save_adapter: the model has no PET method applied (call vlpet.methods.apply_method first)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(model), str(directory / WEIGHTS))
    config = {"method": model.method.to_dict(), "backbone": dataclasses.asdict(model.backbone_config),
              "metadata": metadata or {}}
    (directory / CONFIG).write_text(json.dumps(config, indent=2))
    return directory


def read_pet_config(directory: str | Path) -> dict[str, Any]:
    """The JSON written beside the weights, checked for its two required sections."""
    path = Path(directory) / CONFIG
    if not path.is_file():
        raise ConfigError(f"{path}: missing; an adapter checkpoint directory holds {WEIGHTS} and {CONFIG}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err}); re-save the checkpoint") from None
    for key in ("method", "backbone"):
        if key not in config:
            raise ConfigError(f"{path}: missing the {key!r} section; re-save the checkpoint with save_adapter")
    return config


def load_adapter(model: VLModel, directory: str | Path) -> VLModel:
    """Load saved trainable tensors into `model`, which must carry the same method config."""
    directory = Path(directory)
    config = read_pet_config(directory)
    saved = method_from_dict(config["method"])
    if model.method != saved:
        raise ConfigError(f"{directory / CONFIG}: saved method {saved} differs from the model's {model.method}")
    try:
        tensors = load_file(str(directory / WEIGHTS))
    except (FileNotFoundError, SafetensorError, OSError) as err:
        raise ConfigError(f"{directory / WEIGHTS}: cannot read ({err}); re-save the checkpoint") from None
    expected = {n: p for n, p in model.named_parameters() if p.requires_grad}
    missing, unexpected = expected.keys() - tensors.keys(), tensors.keys() - expected.keys()
    if missing or unexpected:
        raise ConfigError(f"{directory / WEIGHTS}: tensors do not match the model "
                          f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    with torch.no_grad():
        for name, param in expected.items():
            if tensors[name].shape != param.shape:
                raise ConfigError(f"{directory / WEIGHTS}: {name} has shape {tuple(tensors[name].shape)}, "
                                  f"the model expects {tuple(param.shape)}")
            param.copy_(tensors[name])
    return model


def load_pet_model(directory: str | Path) -> VLModel:
    """Rebuild backbone + method from a checkpoint's configs and load its trainable tensors; a PEFT adapter
    directory (`adapter_config.json`: an export, or a LoRA adapter trained elsewhere) is read by PEFT."""
    from vlpet.peft_format import is_peft_dir, load_peft_dir

    if is_peft_dir(directory):
        return load_peft_dir(directory)
    config = read_pet_config(directory)
    backbone = build_dataclass(BackboneConfig, config["backbone"], "backbone")
    model = apply_method(build_vl_model(backbone), method_from_dict(config["method"]))
    return load_adapter(model, directory)
