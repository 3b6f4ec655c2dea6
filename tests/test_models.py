"""VL-BART / VL-T5 wrappers: visual tokens, masks, generation, backbone loading errors."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import FEAT_DIM, tiny_backbone, tiny_batch, tiny_model
from vlpet.errors import ConfigError
from vlpet.models import BackboneConfig, VLInputs, build_vl_model


def test_visual_features_reach_the_decoder(family):
    model = tiny_model(family).eval()
    batch, labels = tiny_batch()
    other = VLInputs(batch.input_ids, batch.attention_mask, torch.randn_like(batch.vis_feats))
    with torch.no_grad():
        assert not torch.allclose(model(batch, labels=labels).logits, model(other, labels=labels).logits)


def test_text_padding_does_not_change_outputs(family):
    """Extra padded text positions are masked everywhere (encoder and cross-attention)."""
    model = tiny_model(family).eval()
    batch, labels = tiny_batch()
    pad = model.pad_token_id
    longer = VLInputs(torch.cat([batch.input_ids, torch.full((3, 3), pad)], 1),
                      torch.cat([batch.attention_mask, torch.zeros(3, 3, dtype=torch.long)], 1), batch.vis_feats)
    with torch.no_grad():
        torch.testing.assert_close(model(batch, labels=labels).logits, model(longer, labels=labels).logits,
                                   atol=1e-5, rtol=1e-5)


def test_grid_is_pooled_to_n_boxes_and_images_are_concatenated(family):
    model = tiny_model(family)
    batch, _ = tiny_batch(n_img=2)
    out, mask = model.encode(batch)
    assert out.last_hidden_state.shape == (3, 6 + 2 * 4, model.d_model)
    assert mask.shape == (3, 6 + 8) and mask[:, 6:].all()


def test_t5_relative_bias_is_zero_for_visual_tokens():
    """The position bias the encoder blocks receive is zero in every row/column of a visual token."""
    model = tiny_model("t5").eval()
    batch, labels = tiny_batch(n_img=1)
    captured = {}
    block = model.backbone.encoder.block[0]
    orig = block.forward

    def spy(hidden, mask, bias, *a, **k):
        captured["bias"] = bias
        return orig(hidden, mask, bias, *a, **k)

    block.forward = spy
    with torch.no_grad():
        model(batch, labels=labels)
    bias = captured["bias"]
    assert bias.shape[-1] == 6 + 4
    assert bias[..., 6:].abs().sum() == 0 and bias[..., 6:, :].abs().sum() == 0
    assert bias[..., :6, :6].abs().sum() > 0


def test_generate_with_beam_search(family):
    model = tiny_model(family).eval()
    batch, _ = tiny_batch()
    out = model.generate(batch, num_beams=3, max_length=5, min_length=5)
    assert out.shape[0] == 3 and out.shape[1] == 5


def test_preset_backbone_is_deterministic_in_its_seed():
    a, b = build_vl_model(tiny_backbone()), build_vl_model(tiny_backbone())
    c = build_vl_model(tiny_backbone(init_seed=1))
    assert torch.equal(a.backbone.lm_head.weight, b.backbone.lm_head.weight)
    assert not torch.equal(a.backbone.lm_head.weight, c.backbone.lm_head.weight)


def test_local_pretrained_directory_loads_with_vl_tokens(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "a": 4}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(tmp_path)
    build_vl_model(tiny_backbone()).backbone.save_pretrained(tmp_path)
    model = build_vl_model(BackboneConfig(pretrained=str(tmp_path), feat_dim=FEAT_DIM, n_boxes=4))
    assert model.family == "bart"
    assert len(model.tokenizer) == 5 + 200
    assert model.backbone.get_input_embeddings().num_embeddings == 205


@pytest.mark.parametrize("kwargs, message", [
    ({"arch": "bart-huge"}, "unknown backbone.arch 'bart-huge'"),
    ({"pretrained": "/nonexistent/bart"}, "no such directory"),
    ({"pretrained": "facebook/bart-base"}, "hf download facebook/bart-base"),
    ({"n_boxes": 35}, "backbone.n_boxes=35"),
    ({"feat_dim": 0}, "backbone.feat_dim=0"),
    ({"dropout": 1.0}, "backbone.dropout=1.0"),
    ({"extra": {"d_model": 30, "encoder_attention_heads": 4}}, "backbone.extra"),
])
def test_bad_backbone_configs_fail_fast_with_the_fix(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        build_vl_model(BackboneConfig(**kwargs))
    assert "\n" not in str(err.value)
