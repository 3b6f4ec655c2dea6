"""A BPE tokenizer trained locally on the embedded benchmark's text (no download), saved and loaded
like any HF tokenizer. Special-token ids follow the backbone family's conventions (BART: <s>=0,
<pad>=1, </s>=2, <unk>=3; T5: <pad>=0, </s>=1, <unk>=2) so HF configs' defaults hold."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from vlpet.models.backbones import EXTRA_TOKENS

SPECIALS = {
    "bart": {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>", "mask_token": "<mask>"},
    "t5": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
}


def train_tokenizer(texts: Iterable[str], family: str, out_dir: str | Path, vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """Train a lower-casing BPE on `texts`, add the VL special tokens and save it to `out_dir`."""
    specials = list(SPECIALS[family].values())
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    # every printable ASCII character stays encodable, so unseen words never become <unk>
    alphabet = [chr(c) for c in range(33, 127)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    ids = {t: tok.token_to_id(t) for t in specials}
    if family == "bart":
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])])
    else:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", ids["</s>"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS[family])
    fast.add_special_tokens({"additional_special_tokens": EXTRA_TOKENS}, replace_extra_special_tokens=False)
    fast.save_pretrained(out_dir)
    return fast
