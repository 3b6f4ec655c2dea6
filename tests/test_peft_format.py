"""Trials in PEFT's adapter format: a LoRA / DoRA model exported, loaded by plain PEFT onto the Hugging Face
backbone (same text logits) and by the project onto the VL model (same VL logits and scores); a PEFT adapter
made elsewhere read back; vlpet-export on a study directory."""

from __future__ import annotations

import json

import pandas as pd
import peft  # pinned in the test extra: a missing peft fails here rather than skipping the reference
import pytest
import torch
from safetensors.torch import load_file

from studies.export import main as export_main
from tests.conftest import tiny_backbone, tiny_batch, tiny_model
from vlpet.checkpoint import load_pet_model, save_adapter
from vlpet.data import build_dataset, build_loader, get_task
from vlpet.errors import ConfigError
from vlpet.methods import apply_method, method_from_dict
from vlpet.models import build_vl_model
from vlpet.peft_format import PEFT_CONFIG, PEFT_WEIGHTS, export_peft
from vlpet.train.config import RunSpec
from vlpet.train.evaluate import evaluate

METHODS = [{"method": "lora", "rank": 4, "alpha": 8.0}, {"method": "dora", "rank": 4, "alpha": 8.0},
           {"method": "lora", "rank": 4, "alpha": 8.0, "train_biases": False}]


def trained(model, seed: int = 1):
    """`model` with every trainable tensor moved off its initial value, as training leaves it (B != 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return model.eval()


def text_logits(hf_model, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    vocab = hf_model.config.vocab_size
    ids, decoder_ids = torch.randint(3, vocab, (3, 9), generator=g), torch.randint(3, vocab, (3, 5), generator=g)
    with torch.no_grad():
        return hf_model(input_ids=ids, decoder_input_ids=decoder_ids).logits


def vl_logits(model) -> torch.Tensor:
    batch, labels = tiny_batch()
    with torch.no_grad():
        return model.eval()(batch, labels=labels).logits


@pytest.mark.parametrize("method", METHODS, ids=["lora", "dora", "lora-no-biases"])
def test_an_export_loads_with_peft_onto_the_backbone_and_with_the_project_onto_the_vl_model(family, method,
                                                                                            tmp_path):
    ours = trained(apply_method(tiny_model(family), method_from_dict(method)))
    export_peft(ours, tmp_path)
    saved = load_file(str(tmp_path / PEFT_WEIGHTS))
    assert all(k.startswith("base_model.model.") for k in saved) and any(".lora_A.weight" in k for k in saved)
    assert any("lora_magnitude_vector" in k for k in saved) == (method["method"] == "dora")
    config = json.loads((tmp_path / PEFT_CONFIG).read_text())
    assert config["peft_type"] == "LORA" and sorted(config["target_modules"]) == sorted(
        [ours.layout.query_proj, ours.layout.value_proj])

    # plain PEFT on a fresh Hugging Face backbone: the project's text side, exactly
    fresh = build_vl_model(ours.backbone_config).backbone
    untouched = text_logits(fresh)
    with_peft = peft.PeftModel.from_pretrained(fresh, str(tmp_path)).eval()
    torch.testing.assert_close(text_logits(with_peft), text_logits(ours.backbone), rtol=0, atol=1e-5)
    assert (text_logits(with_peft) - untouched).abs().max() > 1e-2  # the adapter changes the model

    # the project's loader: PEFT's part and the VL wrapper's own trained parts
    back = load_pet_model(tmp_path)
    assert back.method == ours.method
    torch.testing.assert_close(vl_logits(back), vl_logits(ours), rtol=0, atol=1e-5)


def test_a_method_peft_does_not_have_is_refused_by_name(tmp_path):
    model = apply_method(tiny_model(), method_from_dict({"method": "vlpet", "granularity": "large", "rank": 8,
                                                        "decoder_rank": 8}))
    with pytest.raises(ConfigError, match="method 'vlpet' has no PEFT equivalent; PEFT's format holds lora, dora"):
        export_peft(model, tmp_path)


def test_a_peft_lora_adapter_made_elsewhere_is_read_onto_the_vl_model(tmp_path, tokenizer):
    """A LoRA adapter trained with PEFT alone on a saved Hugging Face model (and its tokenizer): its
    directory names the base, and holds none of the project's files."""
    base = tmp_path / "base"
    build_vl_model(tiny_backbone(vocab_size=len(tokenizer))).backbone.save_pretrained(base)
    tokenizer.save_pretrained(base)
    from transformers import AutoModelForSeq2SeqLM

    elsewhere = peft.get_peft_model(AutoModelForSeq2SeqLM.from_pretrained(base), peft.LoraConfig(
        r=2, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj"], base_model_name_or_path=str(base)))
    trained(elsewhere, seed=3).save_pretrained(tmp_path / "adapter")
    model = load_pet_model(tmp_path / "adapter")  # no vlpet files: the backbone from base_model_name_or_path
    assert model.method.rank == 2 and model.backbone_config.pretrained == str(base)
    torch.testing.assert_close(text_logits(model.backbone), text_logits(elsewhere), rtol=0, atol=1e-5)


def test_vlpet_export_writes_the_front_with_the_same_scores(bench, tokenizer_dir, tmp_path, capsys):
    """A study directory (the table and each trial's adapter-only checkpoint): the front is exported, LoRA
    as PEFT, VL-PET in the project's format, said in one line each; the export scores as the trial did."""
    spec = RunSpec.from_dict({"backbone": {"arch": "tiny-bart", "tokenizer": str(tokenizer_dir), "feat_dim": 16,
                                           "n_boxes": 4}, "data": {"root": str(bench), "eval_batch_size": 16},
                              "decode": {"num_beams": 1}})
    backbone, rows, models = spec.backbone, [], {}
    for trial_id, variant, method, score, params in [
            ("t_00000", "lora", {"method": "lora", "rank": 4}, 60.0, 10),
            ("t_00001", "vlpet-large", {"method": "vlpet", "granularity": "large", "rank": 8, "decoder_rank": 8},
             70.0, 20),
            ("t_00002", "lora", {"method": "lora", "rank": 8}, 50.0, 15)]:  # dominated: not on the front
        torch.manual_seed(0)
        models[trial_id] = trained(apply_method(build_vl_model(backbone), method_from_dict(method)))
        checkpoint = save_adapter(models[trial_id], tmp_path / "study" / "ray" / "s" / trial_id / "checkpoint_000000")
        rows.append({"trial_id": trial_id, "variant": variant, "status": "completed", "epoch": 1, "fidelity": 1.0,
                     "score": score, "params": params, "config": "{}",
                     "checkpoint_path": f"/elsewhere/ray/s/{trial_id}/checkpoint_000000"})  # fetched copy
        assert checkpoint.is_dir()
    pd.DataFrame(rows).to_parquet(tmp_path / "study" / "results.parquet")

    assert export_main([str(tmp_path / "study"), "--front", "--output", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"lora t_00000 (score 60.00): PEFT adapter in {tmp_path / 'out' / 't_00000-lora'}",
                     (f"vlpet-large t_00001 (score 70.00): PEFT has no vlpet; the project's format in "
                      f"{tmp_path / 'out' / 't_00001-vlpet-large'} (vlpet.checkpoint.load_pet_model)")]
    assert (tmp_path / "out" / "t_00000-lora" / PEFT_CONFIG).is_file()
    assert not (tmp_path / "out" / "t_00002-lora").exists()

    data = spec.data  # the same validation data and decoding for the trial and its export
    val = {name: build_loader(data, build_dataset(data, get_task(name), "val", 16), models["t_00000"].tokenizer,
                              "val") for name in data.tasks}
    exported = load_pet_model(tmp_path / "out" / "t_00000-lora")
    scores = [evaluate(m, val, m.tokenizer, decode=spec.decode) for m in (models["t_00000"], exported)]
    assert scores[0] == scores[1], scores
