"""Training-step cost of every PET method vs full fine-tuning, measured side by side in one run.

    python bench/step_cost.py [--arch tiny-bart bart-base] [--batch 8] [--steps 5] [--device cpu|cuda]

For each backbone size and method: median step time (forward + backward + AdamW step, after two
warm-up steps; the methods' steps interleaved round by round), optimizer-state size, and on CUDA the
peak memory of a step; each as a ratio to full fine-tuning of the same model and batch. bf16 autocast
on CUDA.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from vlpet.errors import entry_point
from vlpet.methods import apply_method
from vlpet.models import BackboneConfig, VLInputs, build_vl_model
from vlpet.paper_variants import VARIANTS, variant

TEXT_LEN, TARGET_LEN = 20, 10
# The paper's ranks (96, 128) exceed the tiny model's d_model = 64: scale them down there.
TINY = {"lora": {"rank": 16}, **{f"vlpet-{g}": {"rank": 16, "decoder_rank": 16} for g in ("small", "middlex", "middley", "large")}}


def batch(model, size: int, device: str) -> tuple[VLInputs, torch.Tensor]:
    """A random VQA-like batch: 20 text tokens, a 7x7 grid of 2048-d features, 10 target tokens."""
    vocab = model.backbone.get_input_embeddings().num_embeddings - 200
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, vocab, (size, TEXT_LEN), generator=g)
    inputs = VLInputs(ids.to(device), torch.ones_like(ids).to(device), torch.randn(size, 49, 2048, generator=g).to(device))
    return inputs, torch.randint(4, vocab, (size, TARGET_LEN), generator=g).to(device)


class Run:
    """One method on one backbone, ready to step: model, optimizer, a fixed batch."""

    def __init__(self, arch: str, name: str, size: int, device: str):
        torch.manual_seed(0)
        overrides = TINY.get(name, {}) if arch.startswith("tiny") else {}
        self.model = apply_method(build_vl_model(BackboneConfig(arch=arch, feat_dim=2048)),
                                  variant(name, "bart", **overrides)).to(device)
        self.model.set_task("vqa")  # task-conditioned methods (Hyperformer) generate their weights per task
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-4)
        self.inputs, self.labels = batch(self.model, size, device)
        self.device = device
        self.times: list[float] = []
        self.peak = float("nan")

    def step(self) -> float:
        """One forward + backward + AdamW step; its seconds."""
        cuda = self.device == "cuda"
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = self.model(self.inputs, labels=self.labels).loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def warm_up(self) -> None:
        """Two untimed steps (they allocate the optimizer state); on CUDA, the peak memory of a step of
        this method above what the other methods' models hold."""
        if self.device == "cuda":
            own = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
            others = torch.cuda.memory_allocated() - own
            torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            self.step()
        if self.device == "cuda":
            self.peak = torch.cuda.max_memory_allocated() - others

    def figures(self) -> dict[str, float]:
        state = sum(t.numel() * t.element_size()
                    for s in self.opt.state.values() for t in s.values() if torch.is_tensor(t))
        return {"step_s": statistics.median(self.times), "opt_bytes": state, "peak_bytes": self.peak,
                "trainable": sum(p.numel() for p in self.params), "total": sum(p.numel() for p in self.model.parameters()),
                "tokens": self.inputs.input_ids.numel() + self.inputs.vis_feats.shape[0] * self.inputs.vis_feats.shape[1]
                + self.labels.numel()}


def measure_all(arch: str, size: int, steps: int, device: str,
                names: tuple[str, ...] | None = None) -> dict[str, dict[str, float]]:
    """Every method's (or `names`') median step seconds, optimizer-state bytes and peak memory. The timed
    steps are interleaved (one step of each method per round), so a slower or busier moment of the
    machine falls on every method alike and the ratios stay fair."""
    runs = {name: Run(arch, name, size, device) for name in names or VARIANTS["bart"]}
    for run in runs.values():
        run.warm_up()
    for _ in range(steps):
        for run in runs.values():
            run.times.append(run.step())
    return {name: run.figures() for name, run in runs.items()}


@entry_point
def main() -> None:
    """Print, per backbone size, each method's figures and its ratios to full fine-tuning."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="+", default=["tiny-bart", "bart-base"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"device {args.device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}")
    for arch in args.arch:
        rows = measure_all(arch, args.batch, args.steps, args.device)
        full = rows["full"]
        print(f"\n{arch}: step time and optimizer state relative to full fine-tuning")
        w = max(map(len, rows)) + 2
        cuda = args.device == "cuda"  # torch keeps no allocator statistics on CPU: no peak columns there
        print(f"{'method':<{w}}{'trainable':>13}{'step s':>9}{'x full':>8}{'opt MB':>9}{'x full':>8}"
              + (f"{'peak MB':>9}{'x full':>8}" if cuda else ""))
        for name, r in rows.items():
            print(f"{name:<{w}}{r['trainable']:>13,}{r['step_s']:>9.3f}{r['step_s'] / full['step_s']:>8.2f}"
                  f"{r['opt_bytes'] / 2**20:>9.1f}{r['opt_bytes'] / full['opt_bytes']:>8.3f}"
                  + (f"{r['peak_bytes'] / 2**20:>9.0f}{r['peak_bytes'] / full['peak_bytes']:>8.2f}" if cuda else ""))

if __name__ == "__main__":
    sys.exit(main())
