"""Training-step cost of every PET method vs full fine-tuning, measured side by side in one run.

    python bench/step_cost.py [--arch tiny-bart bart-base] [--batch 8] [--steps 5] [--device cpu|cuda]

For each backbone size and method: median step time (forward + backward + AdamW step, after warm-up),
optimizer-state size, and on CUDA the peak memory; each as a ratio to full fine-tuning of the same
model and batch. bf16 autocast on CUDA.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vlpet.methods import apply_method
from vlpet.methods.variants import VARIANTS, variant
from vlpet.models import BackboneConfig, VLInputs, build_vl_model

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


def measure(arch: str, name: str, size: int, steps: int, device: str) -> dict[str, float]:
    """Median step seconds, optimizer-state bytes and peak memory of one method."""
    torch.manual_seed(0)
    model = apply_method(build_vl_model(BackboneConfig(arch=arch, feat_dim=2048)), variant(name, "bart", **(TINY.get(name, {}) if arch.startswith("tiny") else {}))).to(device)
    model.set_task("vqa")  # task-conditioned methods (Hyperformer) generate their weights per task
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    inputs, labels = batch(model, size, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss = model(inputs, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    state = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else float("nan")
    return {"step_s": statistics.median(times), "opt_bytes": state, "peak_bytes": peak,
            "trainable": sum(p.numel() for p in params)}


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
        rows = {name: measure(arch, name, args.batch, args.steps, args.device) for name in VARIANTS["bart"]}
        full = rows["full"]
        print(f"\n{arch}: step time and optimizer state relative to full fine-tuning")
        print(f"{'method':<16}{'trainable':>13}{'step s':>9}{'x full':>8}{'opt MB':>9}{'x full':>8}{'peak MB':>9}{'x full':>8}")
        for name, r in rows.items():
            print(f"{name:<16}{r['trainable']:>13,}{r['step_s']:>9.3f}{r['step_s'] / full['step_s']:>8.2f}"
                  f"{r['opt_bytes'] / 2**20:>9.1f}{r['opt_bytes'] / full['opt_bytes']:>8.3f}"
                  f"{r['peak_bytes'] / 2**20:>9.0f}{r['peak_bytes'] / full['peak_bytes']:>8.2f}")


if __name__ == "__main__":
    main()
