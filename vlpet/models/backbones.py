"""Build the HF encoder-decoder under a VL model: from a size preset (random init) or a pretrained copy.

The HF classes are used unmodified. Offline, a hub name that is not cached fails at once with a
message that says how to point at a local copy.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
)

from vlpet.config_base import Config, bounded
from vlpet.errors import ConfigError, unknown

# Special tokens added to every tokenizer, as the paper's code does: 100 <extra_id_*> and 100
# <vis_extra_id_*>; the last 100 vocabulary rows double as the (frozen) object-order embeddings.
N_VIS_EXTRA_IDS = 100
EXTRA_TOKENS = [f"<extra_id_{i}>" for i in range(100)] + [f"<vis_extra_id_{i}>" for i in range(N_VIS_EXTRA_IDS)]

# Size presets. Vocabulary sizes are the final ones after adding EXTRA_TOKENS (bart-base:
# 50265 + 200; t5-base: 32100 + 100 = 32200), so the totals match the paper's parameter counts.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "tiny-bart": ("bart", {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
                               "decoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
                               "max_position_embeddings": 256, "vocab_size": 1024}),
    "tiny-t5": ("t5", {"d_model": 64, "d_ff": 128, "d_kv": 16, "num_layers": 2, "num_heads": 4, "vocab_size": 1024,
                           "relative_attention_num_buckets": 32}),
    # the embedded backbones' size (vlpet/train/pretrain.py): at d = 64 the backbone learned to list objects
    # but not to find one that a text names, which every question and statement needs. BART's init_std
    # 0.02 is sized for d = 768+; at d = 128 it left attention uniform and "find the red circle" on a
    # plateau for thousands of steps, so the mini preset uses ~1/sqrt(d)
    "mini-bart": ("bart", {"d_model": 128, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
                               "decoder_attention_heads": 4, "encoder_ffn_dim": 256, "decoder_ffn_dim": 256,
                               "max_position_embeddings": 256, "vocab_size": 1024, "init_std": 0.088}),
    "mini-t5": ("t5", {"d_model": 128, "d_ff": 256, "d_kv": 32, "num_layers": 2, "num_heads": 4, "vocab_size": 1024,
                           "relative_attention_num_buckets": 32}),
    "bart-base": ("bart", {"d_model": 768, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 12,
                               "decoder_attention_heads": 12, "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072,
                               "max_position_embeddings": 1024, "vocab_size": 50265 + 200}),
    "t5-base": ("t5", {"d_model": 768, "d_ff": 3072, "d_kv": 64, "num_layers": 12, "num_heads": 12, "vocab_size": 32200}),
}
# `pretrained: embedded` (`embedded-t5`) names the mini VL-BART (VL-T5) shipped with the package:
# VL-pretrained on the synthetic world by `python -m vlpet.train.pretrain` (see that module), with its tokenizer.
ASSETS = Path(__file__).resolve().parents[1] / "assets"
EMBEDDED = {"embedded": ASSETS / "mini-vl-bart", "embedded-t5": ASSETS / "mini-vl-t5"}
CONFIG_CLASSES = {"bart": (BartConfig, BartForConditionalGeneration), "t5": (T5Config, T5ForConditionalGeneration)}


@dataclass(frozen=True)
class BackboneConfig(Config):
    """Which encoder-decoder to build and how visual features enter it.

    Attributes:
        arch: a size preset (tiny-bart, tiny-t5, bart-base, t5-base), built from config with random
            weights. Ignored when `pretrained` is set.
        pretrained: a local directory saved with `save_pretrained`, a hub name (needs internet or
            the HF cache), "embedded" (the mini VL-BART shipped with the package) or "embedded-t5"
            (the mini VL-T5). The family (bart / t5) is read from its config.
        tokenizer: a tokenizer directory; defaults to `pretrained`. Presets need none.
        vocab_size: override the preset's vocabulary size (e.g. to a local tokenizer's length).
        feat_dim: dimension of the visual features (2048 for CLIP RN101 grids, 512 for CLIP-ViT frames).
        n_boxes: visual tokens per image after adaptive max-pooling of a square grid (the paper's
            `--n_boxes 36 --downsample`: 7x7 -> 6x6); None keeps the features as they are.
        dropout: dropout everywhere (the paper uses 0.1).
        init_seed: seed of a preset's random initialisation. The frozen weights of a preset are a
            function of it, so an adapter-only checkpoint reloads onto the same backbone.
        extra: further HF config fields for a preset (e.g. {"encoder_layers": 3}).
    """

    section: ClassVar[str] = "backbone"

    arch: str = "tiny-bart"
    pretrained: str | None = None
    tokenizer: str | None = None
    vocab_size: int | None = bounded(None, gt=N_VIS_EXTRA_IDS)
    feat_dim: int = bounded(2048, ge=1)
    n_boxes: int | None = 36
    dropout: float = bounded(0.1, ge=0.0, lt=1.0)
    init_seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.pretrained is None and self.arch not in PRESETS:
            raise unknown("backbone.arch", self.arch, PRESETS)
        for name in ("pretrained", "tokenizer"):
            if getattr(self, name) is not None and not getattr(self, name).strip():
                raise self.error(name, f"is empty; give a directory, a hub name or {', '.join(EMBEDDED)}, "
                                       "or remove the key")
        if self.n_boxes is not None and not (0 < self.n_boxes <= N_VIS_EXTRA_IDS and int(self.n_boxes**0.5) ** 2 == self.n_boxes):
            raise self.error("n_boxes", f"must be a square in 1..{N_VIS_EXTRA_IDS} (36 = 6x6) or null")

    def __hash__(self) -> int:  # `extra` is a dict: hash the fields' canonical JSON (cache keys of backbones)
        return hash(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))

    @property
    def pretrained_path(self) -> str | None:
        """Where to load pretrained weights from (`embedded` resolved to the packaged directory)."""
        return str(EMBEDDED[self.pretrained]) if self.pretrained in EMBEDDED else self.pretrained

    @property
    def name(self) -> str:
        """A short label for reports: the preset or the pretrained path's last component."""
        return self.arch if self.pretrained is None else Path(self.pretrained).name


def _is_local(path: str) -> bool:
    return Path(path).expanduser().is_dir()


def _offline_error(what: str, name: str, err: Exception) -> ConfigError:
    return ConfigError(
        f"backbone.{what}={name!r} is neither a local directory nor loadable from the hub ({type(err).__name__}). "
        f"Offline? On a machine with internet run `hf download {name} --local-dir /path/{Path(name).name}` "
        f"(or `AutoModelForSeq2SeqLM.from_pretrained('{name}').save_pretrained(...)`), copy it here and set "
        f"backbone.{what}: /path/{Path(name).name}"
    )


def _load(loader: Any, what: str, name: str, **kwargs: Any) -> Any:
    """`loader.from_pretrained(name)`: a local dir, else the HF cache, else the hub; one clear error."""
    if _is_local(name):
        try:
            return loader.from_pretrained(str(Path(name).expanduser()), **kwargs)
        except (OSError, ValueError) as err:
            raise ConfigError(f"backbone.{what}={name!r}: cannot load from that directory: {err}") from None
    if "/" in name and (name.startswith((".", "/", "~")) or Path(name).suffix):
        raise ConfigError(f"backbone.{what}={name!r}: no such directory; point it at a saved model directory")
    try:
        return loader.from_pretrained(name, local_files_only=True, **kwargs)
    except OSError:
        pass
    try:
        return loader.from_pretrained(name, **kwargs)
    except OSError as err:
        raise _offline_error(what, name, err) from None


def _pretrained_config(name: str) -> Any:
    config = _load(AutoConfig, "pretrained", name)
    if config.model_type not in CONFIG_CLASSES:
        raise ConfigError(f"backbone.pretrained={name!r} is a {config.model_type!r} model; only bart and t5 are supported")
    return config


def load_tokenizer(cfg: BackboneConfig) -> PreTrainedTokenizerBase | None:
    """The tokenizer named by the config (with the VL special tokens added), or None for a bare preset."""
    source = cfg.tokenizer or cfg.pretrained_path
    if source is None:
        return None
    tokenizer = _load(AutoTokenizer, "tokenizer" if cfg.tokenizer else "pretrained", source)
    missing = [t for t in EXTRA_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return tokenizer


def _set_dropout(config: Any, family: str, p: float) -> None:
    if family == "bart":
        config.dropout = config.attention_dropout = config.activation_dropout = p
    else:
        config.dropout_rate = p


def build_hf_model(cfg: BackboneConfig, vocab_size: int | None = None, load_weights: bool = True) -> PreTrainedModel:
    """The HF encoder-decoder for `cfg`; `vocab_size` (the tokenizer's length) resizes the embeddings.

    `load_weights=False` builds a pretrained backbone's architecture without reading its weights
    (for counting parameters on the meta device).
    """
    if cfg.pretrained is not None and not load_weights:
        config = _pretrained_config(cfg.pretrained_path)
        config.vocab_size = vocab_size or config.vocab_size
        return CONFIG_CLASSES[config.model_type][1](config)
    if cfg.pretrained is not None:
        model = _load(AutoModelForSeq2SeqLM, "pretrained", cfg.pretrained_path)
        _set_dropout(model.config, model.config.model_type, cfg.dropout)
        for module in model.modules():  # dropout probabilities are copied into modules at build time
            if isinstance(module, torch.nn.Dropout):
                module.p = cfg.dropout
            elif hasattr(module, "dropout") and isinstance(module.dropout, float):
                module.dropout = cfg.dropout
        if vocab_size is not None and vocab_size != model.get_input_embeddings().num_embeddings:
            model.resize_token_embeddings(vocab_size, mean_resizing=False)
        return model
    family, dims = PRESETS[cfg.arch]
    config_cls, model_cls = CONFIG_CLASSES[family]
    dims = {**dims, **cfg.extra}
    dims["vocab_size"] = vocab_size or cfg.vocab_size or dims["vocab_size"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        try:
            config = config_cls(**dims, decoder_start_token_id=2 if family == "bart" else 0,
                                forced_bos_token_id=None, forced_eos_token_id=None, tie_word_embeddings=True)
            _set_dropout(config, family, cfg.dropout)
            return model_cls(config)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"backbone.extra={cfg.extra}: not a valid {family} config ({err})") from None
