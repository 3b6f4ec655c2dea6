"""The paper's named variants with its hyper-parameters (spec 3-4), per backbone family, and the
Params (%) the paper reports for them (spec 5, 10)."""

from __future__ import annotations

from typing import Any

from vlpet.errors import unknown
from vlpet.methods.base import MethodConfig, method_from_dict

_BART: dict[str, dict[str, Any]] = {
    "full": {"method": "full"},
    "bitfit": {"method": "bitfit"},
    "prompt": {"method": "prompt", "length": 40, "mid_dim": 800},
    "compacter": {"method": "compacter", "reduction_factor": 8, "hypercomplex_division": 2},
    "lora": {"method": "lora", "rank": 128, "alpha": 32.0},
    "adapter": {"method": "adapter", "reduction_factor": 8},
    **{f"vlpet-{g.lower()}": {"method": "vlpet", "granularity": g, "rank": 96, "n_heads": 4, "scale": 1.0,
                              "decoder_rank": 96}
       for g in ("small", "middleX", "middleY", "large")},
}
# T5-base VL-PET: r = r_g = 192, s = 0.3 (README commands); baselines as for BART.
_T5 = {**_BART, **{name: {**cfg, "rank": 192, "scale": 0.3} for name, cfg in _BART.items() if name.startswith("vlpet")}}
VARIANTS = {"bart": _BART, "t5": _T5}

PAPER_PARAMS_PERCENT: dict[tuple[str, str], float] = {
    **{("bart-base", k): v for k, v in {
        "full": 100.0, "bitfit": 1.21, "prompt": 2.00, "compacter": 2.70, "lora": 5.93, "adapter": 4.18,
        "vlpet-small": 2.98, "vlpet-middlex": 2.98, "vlpet-middley": 2.98, "vlpet-large": 4.16}.items()},
    **{("t5-base", k): v for k, v in {
        "full": 100.0, "vlpet-small": 4.51, "vlpet-middlex": 4.50, "vlpet-middley": 4.50, "vlpet-large": 7.31}.items()},
}


def variant(name: str, family: str = "bart", **overrides: Any) -> MethodConfig:
    """The config of a named paper variant (e.g. 'vlpet-large') for a backbone family, with overrides."""
    table = VARIANTS[family]
    if name not in table:
        raise unknown("variant", name, table)
    return method_from_dict({**table[name], **overrides})
