"""The paper's named variants with its hyper-parameters, per backbone family, and the
Params (%) the paper reports for them: Table 2's methods and Table 9's VL-PET designs
on other PET methods (`compacter+g-small+lw`, ..., `adapter+g-large+lw`)."""

from __future__ import annotations

from typing import Any

from vlpet.errors import unknown
from vlpet.methods.base import METHODS, MethodConfig, method_from_dict
from vlpet.methods.layers import GRANULARITIES
from vlpet.paper_results import TABLE2, TABLE9


def design_name(cfg: MethodConfig) -> str:
    """The variant name of a bottleneck module with VL-PET's designs, as Table 9 writes it: the method,
    then `+g-<granularity>` for a gate and `+lw` for the lightweight design ('compacter+g-large+lw',
    'adapter+lw', 'adapter'). Methods without these fields are named by their method."""
    gate = getattr(cfg, "gate", None)
    suffixes = ([f"g-{gate.lower()}"] if gate else []) + (["lw"] if getattr(cfg, "lightweight", False) else [])
    return "+".join([cfg.method, *suffixes])


_ADAPTER = {"method": "adapter", "reduction_factor": 8}
_COMPACTER = {"method": "compacter", "reduction_factor": 8, "hypercomplex_division": 2}

_BART: dict[str, dict[str, Any]] = {
    "full": {"method": "full"},
    "bitfit": {"method": "bitfit"},
    "prompt": {"method": "prompt", "length": 40, "mid_dim": 800},
    "compacter": _COMPACTER,
    "lora": {"method": "lora", "rank": 128, "alpha": 32.0},
    # DoRA's VL-BART runs (Liu et al. 2024, in VL-Adapter's code) take LoRA's setting; not a paper (VL-PET) variant
    "dora": {"method": "dora", "rank": 128, "alpha": 32.0},
    "adapter": _ADAPTER,
    "hyperformer": {"method": "hyperformer", "reduction_factor": 8, "task_embedding_dim": 512, "hidden_dim": 128,
                    "projected_dim": 8},
    **{f"vlpet-{g.lower()}": {"method": "vlpet", "granularity": g, "rank": 96, "n_heads": 4, "scale": 1.0,
                              "decoder_rank": 96}
       for g in GRANULARITIES},
    # Table 9: r = r_g = r_dec = 96 (the bottleneck size, left to follow reduction_factor), s = 1.
    **{design_name(method_from_dict(cfg)): cfg
       for cfg in ({**base, "gate": g, "lightweight": True} for base in (_COMPACTER, _ADAPTER) for g in GRANULARITIES)},
}
# a registered method that no variant above uses is a variant of its own name at its config's defaults
_BART |= {name: {"method": name} for name in METHODS if name not in {cfg["method"] for cfg in _BART.values()}}
# T5-base VL-PET: r = r_g = 192, s = 0.3 (README commands); baselines and the Table 9 designs (a
# BART-only table) as for BART, so that every variant name exists in both families.
_T5 = {**_BART, **{name: {**cfg, "rank": 192, "scale": 0.3} for name, cfg in _BART.items() if name.startswith("vlpet")}}
VARIANTS = {"bart": _BART, "t5": _T5}

# The paper's Params (%) per (backbone preset, variant).
PAPER_PARAMS_PERCENT = {(backbone, row[0]): row[2] for table in (TABLE2, TABLE9)
                        for backbone, rows in table.items() for row in rows}


def variant(name: str, family: str = "bart", **overrides: Any) -> MethodConfig:
    """The config of a named paper variant (e.g. 'vlpet-large') for a backbone family, with overrides."""
    table = VARIANTS[family]
    if name not in table:
        raise unknown("variant", name, table)
    return method_from_dict({**table[name], **overrides})


PAPER_D_MODEL = 768  # BART-base and T5-base: the hidden size the paper's module sizes were chosen for
# The official scripts' learning rates: image-text BART PET 1e-3 and full fine-tuning 1e-4, T5 VL-PET 3e-4
# (the T5 baselines come from the LST paper, whose rates the seed does not give: VL-PET's are used); video
# BART VL-PET 7e-4 (used for the video baselines too).
PAPER_LR = {"bart": {"full": 1e-4, "*": 1e-3}, "t5": {"full": 1e-4, "*": 3e-4}, "bart-video": {"*": 7e-4}}


def paper_setting(name: str, family: str, d_model: int, video: bool = False) -> dict[str, Any]:
    """A paper variant's hand-picked hyperparameters for a backbone of hidden size `d_model`: its method
    fields with the sizes scaled by d_model / 768 (a rank to a multiple of N_h), and the paper's lr (its
    video scripts' for video tasks)."""
    fields = {k: v for k, v in VARIANTS[family][name].items() if k != "method"}
    for key in METHODS[VARIANTS[family][name]["method"]].size_fields:
        if fields.get(key) is not None:
            step = fields.get("n_heads", 1) if key == "rank" else 1
            fields[key] = max(step, round(fields[key] * d_model / PAPER_D_MODEL / step) * step)
    lrs = PAPER_LR.get(f"{family}-video", PAPER_LR[family]) if video else PAPER_LR[family]
    return {**fields, "lr": lrs.get(name, lrs["*"])}
