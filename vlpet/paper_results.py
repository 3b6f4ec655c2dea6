"""The VL-PET paper's image-text results (Table 2, and Table 9 below), as plain data.

Rows: (variant, paper method name, Params %, VQA, GQA, NLVR2, COCO CIDEr, Avg). The T5-base baseline
rows are the LST paper's numbers, which the VL-PET authors copied; their Params % are not reproduced
by counting.
"""

from __future__ import annotations

TABLE2: dict[str, list[tuple[str, str, float, float, float, float, float, float]]] = {
    "bart-base": [
        ("full", "Full fine-tuning", 100.0, 66.88, 56.79, 73.66, 112.01, 77.33),
        ("bitfit", "BitFit", 1.21, 52.94, 43.15, 52.29, 111.44, 64.96),
        ("prompt", "Prompt tuning", 2.00, 44.12, 36.37, 51.34, 105.02, 59.21),
        ("compacter", "Compacter", 2.70, 64.63, 52.70, 71.11, 114.69, 75.78),
        ("hyperformer", "HyperFormer", 5.79, 64.62, 52.55, 70.74, 114.84, 75.69),
        ("lora", "LoRA", 5.93, 65.15, 53.66, 72.58, 115.01, 76.60),
        ("adapter", "VL-Adapter", 4.18, 65.76, 54.16, 73.19, 114.61, 76.93),
        ("vlpet-small", "VL-PET-small", 2.98, 65.43, 54.03, 72.43, 120.68, 78.14),
        ("vlpet-middlex", "VL-PET-middleX", 2.98, 65.54, 54.53, 72.66, 120.72, 78.37),
        ("vlpet-middley", "VL-PET-middleY", 2.98, 65.36, 53.83, 73.43, 120.31, 78.23),
        ("vlpet-large", "VL-PET-large", 4.16, 66.17, 55.11, 73.43, 122.03, 79.18),
    ],
    "t5-base": [
        ("full", "Full fine-tuning", 100.0, 67.10, 56.30, 74.30, 112.20, 77.50),
        ("bitfit", "BitFit", 0.83, 55.10, 45.50, 51.70, 101.20, 63.40),
        ("prompt", "Prompt tuning", 1.26, 47.40, 40.60, 51.00, 96.10, 58.80),
        ("lora", "LoRA", 7.54, 63.70, 53.30, 70.00, 110.30, 74.30),
        ("adapter", "VL-Adapter", 7.98, 67.10, 56.00, 72.70, 111.80, 76.90),
        ("vlpet-small", "VL-PET-small", 4.51, 65.88, 54.96, 72.64, 120.05, 78.38),
        ("vlpet-middlex", "VL-PET-middleX", 4.50, 66.63, 55.87, 74.11, 120.41, 79.26),
        ("vlpet-middley", "VL-PET-middleY", 4.50, 66.62, 55.87, 73.91, 120.26, 79.17),
        ("vlpet-large", "VL-PET-large", 7.31, 66.95, 56.06, 73.42, 121.66, 79.52),
    ],
}

# Table 9: VL-PET's granularity-controlled gates G and lightweight designs LW applied to other PET
# methods, BART-base, same columns as TABLE2. The Compacter row is the Table 2 baseline.
TABLE9: dict[str, list[tuple[str, str, float, float, float, float, float, float]]] = {
    "bart-base": [
        ("compacter", "Compacter", 2.70, 64.63, 52.70, 71.11, 114.69, 75.78),
        ("compacter+g-small+lw", "Compacter + G_small + LW", 2.08, 64.14, 52.84, 71.04, 118.77, 76.70),
        ("compacter+g-middlex+lw", "Compacter + G_middleX + LW", 2.07, 64.35, 53.10, 70.57, 119.02, 76.76),
        ("compacter+g-middley+lw", "Compacter + G_middleY + LW", 2.07, 64.00, 52.49, 70.81, 117.48, 76.20),
        ("compacter+g-large+lw", "Compacter + G_large + LW", 3.28, 65.60, 54.05, 71.66, 119.55, 77.72),
        ("adapter+g-small+lw", "VL-Adapter + G_small + LW", 2.98, 65.56, 54.34, 71.95, 119.10, 77.74),
        ("adapter+g-middlex+lw", "VL-Adapter + G_middleX + LW", 2.98, 65.73, 54.90, 73.04, 118.34, 78.00),
        ("adapter+g-middley+lw", "VL-Adapter + G_middleY + LW", 2.98, 65.67, 54.11, 73.18, 117.38, 77.58),
        ("adapter+g-large+lw", "VL-Adapter + G_large + LW", 4.16, 66.31, 55.09, 73.46, 119.05, 78.47),
    ],
}

# The seed standard deviations of those means (3 seeds; ../shared/design/paper-tables.md), per backbone and
# variant: (VQA, GQA, NLVR2, COCO CIDEr, Avg), Table 9's rows with the BART-base ones. The T5-base
# baselines' are the LST paper's.
STD: dict[str, dict[str, tuple[float, float, float, float, float]]] = {
    "bart-base": {
        "full": (0.17, 0.41, 0.21, 0.93, 0.39), "bitfit": (0.52, 0.94, 0.76, 0.41, 0.17),
        "prompt": (0.45, 0.35, 0.83, 0.24, 0.21), "compacter": (0.09, 0.24, 0.35, 0.42, 0.21),
        "hyperformer": (0.67, 0.64, 1.45, 0.38, 0.74), "lora": (0.16, 0.84, 0.73, 0.26, 0.32),
        "adapter": (0.28, 0.44, 0.71, 0.26, 0.25), "vlpet-small": (0.06, 0.14, 0.22, 0.35, 0.11),
        "vlpet-middlex": (0.09, 0.15, 0.17, 0.51, 0.14), "vlpet-middley": (0.15, 0.39, 0.78, 0.09, 0.19),
        "vlpet-large": (0.27, 0.17, 0.35, 0.46, 0.14),
        "compacter+g-small+lw": (0.05, 0.45, 0.54, 0.31, 0.08), "compacter+g-middlex+lw": (0.10, 0.73, 0.44, 0.37, 0.17),
        "compacter+g-middley+lw": (0.12, 0.60, 0.68, 0.11, 0.33), "compacter+g-large+lw": (0.15, 0.30, 0.17, 0.23, 0.15),
        "adapter+g-small+lw": (0.17, 0.32, 0.23, 0.25, 0.11), "adapter+g-middlex+lw": (0.12, 0.10, 0.50, 0.91, 0.31),
        "adapter+g-middley+lw": (0.17, 0.29, 0.34, 0.52, 0.08), "adapter+g-large+lw": (0.23, 0.37, 0.37, 0.83, 0.11),
    },
    "t5-base": {
        "full": (0.10, 0.30, 0.40, 0.30, 0.30), "bitfit": (0.20, 0.20, 1.10, 0.20, 0.10),
        "prompt": (0.70, 0.40, 0.40, 0.90, 0.60), "lora": (0.20, 0.10, 0.30, 0.40, 0.10),
        "adapter": (0.10, 0.40, 0.30, 0.10, 0.20), "vlpet-small": (0.31, 1.01, 0.09, 0.41, 0.37),
        "vlpet-middlex": (0.14, 0.25, 0.37, 0.31, 0.26), "vlpet-middley": (0.20, 0.13, 0.45, 0.40, 0.08),
        "vlpet-large": (0.21, 0.21, 0.46, 0.06, 0.21),
    },
}
# Where a table's baseline rows come from, when not from the VL-PET authors' own runs.
BASELINES_FROM = {"t5-base": "the LST paper's three-seed results (Sung et al., 2022), which the VL-PET paper copies"}
