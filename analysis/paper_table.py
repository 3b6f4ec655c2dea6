"""The VL-PET paper's image-text results (Table 2, and Table 9 for studies of its designs), to set a
study's results beside.

Rows are (variant, paper method name, Params %, VQA, GQA, NLVR2, COCO CIDEr, Avg, table) and the seed
std of each score (`<column>_std`); `variant` is this project's variant name and `table` the paper's table
number. Scores are the paper's test numbers on VQA / GQA / NLVR2 / COCO captioning, means over 3 seeds.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from analysis.table import AnalysisError
from vlpet.paper_results import BASELINES_FROM, STD
from vlpet.paper_results import TABLE2 as _TABLE2
from vlpet.paper_results import TABLE9 as _TABLE9

# task column suffix in a results table -> the paper's column name
PAPER_TASKS = {"vqa": "VQA", "gqa": "GQA", "nlvr": "NLVR2", "caption": "COCO CIDEr"}
COLUMNS = ["variant", "method", "params_pct", *PAPER_TASKS, "avg", "table"]
SCORES = (*PAPER_TASKS, "avg")

BACKBONES = tuple(_TABLE2)


def resolve_backbone(name: str) -> str:
    """The paper table for a backbone name: 'bart-base' / 't5-base', or any name of that family ('tiny-t5')."""
    if name in _TABLE2:
        return name
    family = [b for b in BACKBONES if b.split("-")[0] in name.lower()]
    if len(family) != 1:
        raise AnalysisError(f"no paper table for backbone {name!r}; valid: {', '.join(BACKBONES)}")
    return family[0]


def paper_table(backbone: str = "bart-base", variants: Iterable[str] = ()) -> pd.DataFrame:
    """The paper's Table 2 rows for `backbone` (see `resolve_backbone`), then its Table 9 rows (VL-PET's
    gates and lightweight designs on Compacter and VL-Adapter) when `variants` (the study's) include one
    of them; columns `COLUMNS` and `<score>_std`."""
    backbone = resolve_backbone(backbone)
    rows = [(*row, 2) for row in _TABLE2[backbone]]
    known = {row[0] for row in rows}
    designs = [(*row, 9) for row in _TABLE9.get(backbone, []) if row[0] not in known]  # Table 9 repeats Compacter
    if {row[0] for row in designs} & set(variants):
        rows += designs
    table = pd.DataFrame(rows, columns=COLUMNS).astype({c: float for c in ("params_pct", *SCORES)})
    std = pd.DataFrame([STD[backbone][v] for v in table["variant"]], columns=[f"{c}_std" for c in SCORES])
    return pd.concat([table, std], axis=1)


def baselines_note(backbone: str) -> str:
    """Where the paper table's baseline rows come from, when not from the VL-PET authors' runs ('' then)."""
    source = BASELINES_FROM.get(resolve_backbone(backbone))
    return f"The paper's baseline rows for {resolve_backbone(backbone)} are {source}." if source else ""
