"""Trainable-parameter report for any VL model + PET method, and the paper's Params (%) table.

Counted as the paper's code does: percent = trainable / total x 100 over the final model,
where total includes the resized vocabulary, the visual embedding and every added PET module; tied
tensors count once and buffers not at all.

    vlpet-params --backbone bart-base                     # every variant, built on the meta device
    vlpet-params --backbone t5-base --variant vlpet-large   # one variant's breakdown (= python -m vlpet.params)
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vlpet.errors import ConfigError, entry_point
from vlpet.methods import METHODS, MethodConfig, apply_method
from vlpet.methods.base import IMAGE_TASKS, field_names
from vlpet.models import BackboneConfig, build_vl_model
from vlpet.models.backbones import PRESETS
from vlpet.paper_variants import PAPER_PARAMS_PERCENT, VARIANTS, variant


@dataclass
class ParamReport:
    """Trainable / total parameter counts with a per-group breakdown."""

    trainable: int
    total: int
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)  # group -> (trainable, total)

    @property
    def percent(self) -> float:
        """Trainable share of all parameters, in percent."""
        return 100.0 * self.trainable / self.total

    def format(self) -> str:
        """A table of the groups and the totals."""
        lines = [f"{'group':<28}{'trainable':>14}{'total':>14}"]
        lines += [f"{g:<28}{t:>14,}{n:>14,}" for g, (t, n) in sorted(self.groups.items())]
        lines.append(f"{'TOTAL':<28}{self.trainable:>14,}{self.total:>14,}   {self.percent:.3f} % trainable")
        return "\n".join(lines)


def _group(name: str) -> str:
    """Coarse component of a parameter name: PET modules by kind, else the backbone part."""
    if name.startswith("visual_embedding."):
        return "visual embedding"
    if name.startswith("pet_prompt."):
        return "pet: prompt"
    stack = "encoder" if ".encoder." in name else "decoder" if ".decoder." in name else "embeddings"
    pet = re.search(r"pet_(\w+?)[._]", name)
    if pet:
        return f"pet: {stack} {pet.group(1).rstrip('_')}"
    if "layer_norm" in name or "layernorm" in name:
        return f"{stack} layer norms"
    if name.endswith(".bias"):
        return f"{stack} biases"
    return f"{stack} weights"


def param_report(model: nn.Module) -> ParamReport:
    """Count trainable and total parameters of `model` (de-duplicating tied tensors), by group."""
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, p in model.named_parameters():  # named_parameters() yields a tied tensor once
        g = groups[_group(name)]
        g[1] += p.numel()
        if p.requires_grad:
            g[0] += p.numel()
    trainable = sum(t for t, _ in groups.values())
    total = sum(n for _, n in groups.values())
    return ParamReport(trainable, total, {k: (t, n) for k, (t, n) in groups.items()})


def config_report(backbone: BackboneConfig, method: MethodConfig) -> ParamReport:
    """Report for a backbone + method config, built on the meta device: no weights read, no memory,
    so a study knows a configuration's size before spending any compute on it."""
    with torch.device("meta"):
        model = apply_method(build_vl_model(backbone, load_weights=False), method)
    return param_report(model)


def variant_report(arch: str, name: str, feat_dim: int = 2048, **overrides: Any) -> ParamReport:
    """Report for a paper variant on a size preset (its config fields changed by `overrides`)."""
    return config_report(BackboneConfig(arch=arch, feat_dim=feat_dim), variant(name, PRESETS[arch][0], **overrides))


def params_table(arch: str, feat_dim: int = 2048) -> str:
    """Trainable, total and Params (%) of every variant on `arch`, beside the paper's value."""
    family = PRESETS[arch][0]
    width = max(map(len, VARIANTS[family])) + 2
    lines = [f"Params on {arch} (feat_dim {feat_dim}); percent = trainable / total of the final model",
             f"{'variant':<{width}}{'trainable':>14}{'total':>14}{'ours %':>9}{'paper %':>9}"]
    for name in VARIANTS[family]:
        rep = variant_report(arch, name, feat_dim)
        paper = PAPER_PARAMS_PERCENT.get((arch, name))
        lines.append(f"{name:<{width}}{rep.trainable:>14,}{rep.total:>14,}{rep.percent:>9.2f}"
                     f"{(f'{paper:.2f}' if paper is not None else '-'):>9}")
    # the per-task form of the bottleneck methods (shared: false): one set of modules per image task
    per_task = [n for n, cfg in VARIANTS[family].items() if "shared" in field_names(METHODS[cfg["method"]]) and "+" not in n]
    lines.append(f"per task (shared: false; one set of modules for each of {', '.join(IMAGE_TASKS)}):")
    for name in per_task:
        rep = variant_report(arch, name, feat_dim, shared=False)
        lines.append(f"{name:<{width}}{rep.trainable:>14,}{rep.total:>14,}{rep.percent:>9.2f}{'-':>9}")
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """CLI: print the parameter table of every variant, or one variant's breakdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="bart-base", help=f"size preset: {', '.join(PRESETS)}")
    parser.add_argument("--variant", help="print this variant's per-group breakdown instead of the table")
    parser.add_argument("--feat-dim", type=int, default=2048, help="visual feature size (512 for video)")
    args = parser.parse_args(argv)
    if args.backbone not in PRESETS:
        raise ConfigError(f"--backbone {args.backbone!r} is not a preset; choose one of {', '.join(PRESETS)}")
    if args.variant:
        print(variant_report(args.backbone, args.variant, args.feat_dim).format())
    else:
        print(params_table(args.backbone, args.feat_dim))
    return 0


if __name__ == "__main__":
    sys.exit(main())
