"""Adapters in Hugging Face PEFT's format, both ways: a LoRA or DoRA model written as PEFT's adapter
directory (`adapter_config.json` + `adapter_model.safetensors`, PEFT's key names and target modules), and
such a directory read back onto the project's VL model.

PEFT holds the text side only. What the VL wrapper trains besides (the visual embedding, and any other
trained tensor PEFT's state does not hold) goes beside it in `vlpet_extras.safetensors`, with the
backbone config in `vlpet_backbone.json`. Plain PEFT loads the directory onto the Hugging Face model
(`PeftModel.from_pretrained(AutoModelForSeq2SeqLM.from_pretrained(base), directory)`, `base` as
`adapter_config.json`'s `base_model_name_or_path`); `load_peft_dir` loads all of it onto a VL model.
Methods PEFT does not have (VL-PET, VL-Adapter, Compacter, Hyperformer, prompt tuning) keep the project's
format (`vlpet.checkpoint`)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vlpet.errors import ConfigError, build_dataclass
from vlpet.methods import MethodConfig, method_from_dict
from vlpet.models import BackboneConfig, VLModel, build_vl_model

PEFT_CONFIG = "adapter_config.json"  # PEFT's own file names
PEFT_WEIGHTS = "adapter_model.safetensors"
EXTRAS = "vlpet_extras.safetensors"
BACKBONE = "vlpet_backbone.json"
PEFT_METHODS = ("lora", "dora")  # the project's methods that PEFT has, as LoraConfig (use_dora for DoRA)
# the project's layer attribute -> PEFT's (adapter "default"); the wrapped projection is PEFT's base_layer
_RENAMES = ((".pet_lora_A.", ".lora_A.default."), (".pet_lora_B.", ".lora_B.default."),
            (".pet_dora_magnitude", ".lora_magnitude_vector.default.weight"), (".base.", ".base_layer."))


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ConfigError("PEFT is not installed; pip install 'vlpet-studies[export]' (peft 0.21.2)") from None
    return peft


def peft_config(model: VLModel, base: str | None) -> Any:
    """PEFT's LoraConfig equal to the model's LoRA or DoRA config: the same rank, scaling, dropout and
    target projections (q and v of every attention), every bias trained when the method trains them."""
    method = model.method
    return _peft().LoraConfig(r=method.rank, lora_alpha=method.alpha, lora_dropout=method.dropout,
                              target_modules=[model.layout.query_proj, model.layout.value_proj],
                              use_dora=method.method == "dora", bias="all" if method.train_biases else "none",
                              base_model_name_or_path=base)


def _peft_name(name: str) -> str:
    """A backbone parameter's name in a PEFT model wrapping that backbone."""
    for ours, theirs in _RENAMES:
        name = name.replace(ours, theirs)
    return f"base_model.model.{name}"


def export_peft(model: VLModel, directory: str | Path) -> Path:
    """Write `model` (LoRA or DoRA) as a PEFT adapter directory, its VL extras beside it."""
    if model.method is None or model.method.method not in PEFT_METHODS:
        name = model.method.method if model.method is not None else "none"
        raise ConfigError(f"method {name!r} has no PEFT equivalent; PEFT's format holds {', '.join(PEFT_METHODS)}")
    base = model.backbone_config.pretrained_path
    peft_model = _peft().get_peft_model(build_vl_model(model.backbone_config).backbone, peft_config(model, base))
    theirs, copied, extras = dict(peft_model.named_parameters()), {}, {}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            target = theirs.get(_peft_name(name.removeprefix("backbone."))) if name.startswith("backbone.") else None
            if target is None:  # the VL wrapper's own (the visual embedding): not PEFT's
                extras[name] = param.detach().cpu().contiguous()
            else:
                copied[name] = target.copy_(param)
    held = {t.data_ptr() for t in _peft().get_peft_model_state_dict(peft_model).values()}  # what PEFT will save
    lost = [name for name, target in copied.items() if target.data_ptr() not in held]
    if lost:  # a trained tensor PEFT's file would not hold: the export would not be the trained model
        raise ConfigError(f"PEFT's adapter file would leave out trained tensors {lost[:3]}; keep this trial in "
                          "the project's format")
    directory = Path(directory)
    peft_model.save_pretrained(str(directory))
    save_file(extras, str(directory / EXTRAS))
    (directory / BACKBONE).write_text(json.dumps({"backbone": dataclasses.asdict(model.backbone_config),
                                                  "method": model.method.to_dict()}, indent=2))
    return directory


def is_peft_dir(directory: str | Path) -> bool:
    return (Path(directory) / PEFT_CONFIG).is_file()


def _method_of(adapter: dict[str, Any], directory: Path) -> MethodConfig:
    """The project's LoRA / DoRA config for a PEFT LoRA adapter config (refused: other PEFT types)."""
    if adapter.get("peft_type") != "LORA":
        raise ConfigError(f"{directory / PEFT_CONFIG}: peft_type {adapter.get('peft_type')!r}; the project reads "
                          "PEFT's LORA adapters (LoRA and DoRA)")
    return method_from_dict({"method": "dora" if adapter.get("use_dora") else "lora", "rank": adapter["r"],
                             "alpha": float(adapter["lora_alpha"]), "dropout": adapter.get("lora_dropout", 0.0),
                             "train_biases": adapter.get("bias", "none") != "none"})


def load_peft_dir(directory: str | Path, backbone: BackboneConfig | None = None) -> VLModel:
    """A PEFT LoRA adapter directory on the VL model: PEFT injects and loads it into the Hugging Face
    backbone, the extras (when the directory has them) fill the VL wrapper. The backbone config is the
    directory's `vlpet_backbone.json`, else `backbone`, else `base_model_name_or_path` read as
    `backbone.pretrained` (a visual embedding without extras is the backbone's own, or untrained)."""
    directory = Path(directory)
    try:
        adapter = json.loads((directory / PEFT_CONFIG).read_text())
        saved = json.loads((directory / BACKBONE).read_text()) if (directory / BACKBONE).is_file() else None
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{directory}: cannot read the adapter's config ({err})") from None
    method = _method_of(adapter, directory)
    if saved is not None:
        backbone = build_dataclass(BackboneConfig, saved["backbone"], "backbone")
    elif backbone is None:
        if not adapter.get("base_model_name_or_path"):
            raise ConfigError(f"{directory / PEFT_CONFIG}: no base_model_name_or_path and no {BACKBONE}; give the "
                              "backbone (a run config's backbone section)")
        backbone = BackboneConfig(pretrained=adapter["base_model_name_or_path"])
    model = build_vl_model(backbone)
    _peft().PeftModel.from_pretrained(model.backbone, str(directory))  # injects into model.backbone in place
    model.method = method
    if (directory / EXTRAS).is_file():
        extras = load_file(str(directory / EXTRAS))
        unknown = extras.keys() - dict(model.named_parameters()).keys()
        if unknown:
            raise ConfigError(f"{directory / EXTRAS}: tensors the model does not have: {sorted(unknown)[:3]}")
        model.load_state_dict(extras, strict=False)
    return model.eval()
