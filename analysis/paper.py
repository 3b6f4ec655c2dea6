"""The VL-PET paper's image-text results (Table 2), to set a study's results beside.

Rows are (variant, paper method name, Params %, VQA, GQA, NLVR2, COCO CIDEr, Avg); `variant` is this
project's variant name. Scores are the paper's test numbers on VQA / GQA / NLVR2 / COCO captioning.
"""

from __future__ import annotations

import pandas as pd

from analysis.table import AnalysisError
from vlpet.paper import TABLE2 as _TABLE2

# task column suffix in a results table -> the paper's column name
TASKS = {"vqa": "VQA", "gqa": "GQA", "nlvr": "NLVR2", "caption": "COCO CIDEr"}
COLUMNS = ["variant", "method", "params_pct", *TASKS, "avg"]

BACKBONES = tuple(_TABLE2)


def resolve_backbone(name: str) -> str:
    """The paper table for a backbone name: 'bart-base' / 't5-base', or any name of that family ('tiny-t5')."""
    if name in _TABLE2:
        return name
    family = [b for b in BACKBONES if b.split("-")[0] in name.lower()]
    if len(family) != 1:
        raise AnalysisError(f"no paper table for backbone {name!r}; valid: {', '.join(BACKBONES)}")
    return family[0]


def paper_table(backbone: str = "bart-base") -> pd.DataFrame:
    """The paper's Table 2 rows for `backbone` (see `resolve_backbone`), columns `COLUMNS`."""
    return pd.DataFrame(_TABLE2[resolve_backbone(backbone)], columns=COLUMNS)
