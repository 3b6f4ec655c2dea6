"""Placeholder entry point until the study driver lands: a smoke run of every VL-PET variant on a tiny VL-BART."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from vlpet.methods import apply_method  # noqa: E402
from vlpet.methods.variants import variant  # noqa: E402
from vlpet.models import BackboneConfig, VLInputs, build_vl_model  # noqa: E402
from vlpet.params import param_report  # noqa: E402

if __name__ == "__main__":
    for name in ("vlpet-small", "vlpet-middlex", "vlpet-middley", "vlpet-large"):
        model = apply_method(build_vl_model(BackboneConfig(arch="tiny-bart")), variant(name, rank=16, decoder_rank=16))
        batch = VLInputs(torch.randint(3, 500, (2, 8)), torch.ones(2, 8, dtype=torch.long), torch.randn(2, 49, 2048))
        loss = model(batch, labels=torch.randint(3, 500, (2, 4))).loss
        loss.backward()
        print(f"{name:<14} loss {loss.item():.3f}  trainable {param_report(model).percent:.2f} %")
