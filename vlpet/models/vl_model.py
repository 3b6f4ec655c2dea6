"""VL-BART / VL-T5: an unmodified HF encoder-decoder fed with visual features on the encoder side.

Visual tokens follow the paper's code:

    v_j = LN_f(W_f f_j) + LN_p(W_p box_j) + E_img[image index] + E_tok[V - 1 - j]

where E_tok is the backbone's own (frozen, tied) token table read from its last rows. Text tokens get
the backbone's usual embedding (BART: positions + `layernorm_embedding`; T5: nothing); the two are
concatenated `[text ; visual]` and run through the backbone's own encoder layers. BART positions and
T5's relative position bias apply to text only (T5's bias is zero for every pair with a visual token).
The decoder, LM head and `generate()` are the HF ones, given the encoder output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.models.t5.modeling_t5 import T5Attention, T5LayerNorm

from vlpet.errors import ConfigError
from vlpet.models.backbones import BackboneConfig, build_hf_model, load_tokenizer
from vlpet.models.layout import LAYOUTS, Layout


def init_new_linear(module: nn.Module, family: str) -> None:
    """Initialise a module added to the backbone the way the paper's code did for that family.

    BART: every nn.Linear gets N(0, 0.02) weights and zero biases (HF BART's `_init_weights`). T5:
    PyTorch's default initialisation is kept, as HF-T5's init never touched foreign modules.
    """
    if family != "bart":
        return
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.normal_(sub.weight, std=0.02)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, std=0.02)


class VisualEmbedding(nn.Module):
    """Projects region/grid/frame features (and boxes) to d_model visual tokens."""

    def __init__(self, feat_dim: int, d_model: int, family: str, n_boxes: int | None):
        super().__init__()
        norm = (lambda: nn.LayerNorm(d_model)) if family == "bart" else (lambda: T5LayerNorm(d_model))
        self.feat_proj = nn.Linear(feat_dim, d_model)
        self.feat_norm = norm()
        self.box_proj = nn.Linear(5, d_model)
        self.box_norm = norm()
        self.img_order = nn.Embedding(2, d_model)
        self.n_boxes = n_boxes
        init_new_linear(self, family)

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        """Adaptive max-pool each image's square grid to n_boxes tokens ([B, I, L, F] -> [B, I, n, F])."""
        b, n_img, length, dim = feats.shape
        side = int(length**0.5)
        if self.n_boxes is None or length == self.n_boxes or side * side != length:
            return feats
        grid = feats.reshape(b * n_img, side, side, dim).permute(0, 3, 1, 2)
        target = int(self.n_boxes**0.5)
        pooled = nn.functional.adaptive_max_pool2d(grid, (target, target))
        return pooled.permute(0, 2, 3, 1).reshape(b, n_img, target * target, dim)

    def forward(self, feats: torch.Tensor, token_table: nn.Embedding, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """feats: [B, L, F] or [B, I, L, F] (I images, e.g. 2 for NLVR2) -> [B, I*L', d]."""
        if feats.dim() == 3:
            feats = feats.unsqueeze(1)
        feats = self.pool(feats.to(self.feat_proj.weight.dtype))
        b, n_img, length, _ = feats.shape
        if boxes is None:  # every CLIP loader of the paper feeds all-zero boxes
            boxes = feats.new_zeros(b, n_img, length, 5)
        out = self.feat_norm(self.feat_proj(feats)) + self.box_norm(self.box_proj(boxes.to(feats.dtype)))
        out = out + self.img_order.weight[:n_img, None, :]
        vocab = token_table.num_embeddings
        obj_rows = vocab - 1 - torch.arange(length, device=feats.device)
        out = out + token_table(obj_rows).to(out.dtype)
        return out.reshape(b, n_img * length, -1)


class _BartText:
    """BART text embedding and encoder stack, called piecewise so visual tokens can join in between."""

    @staticmethod
    def embed(hf: PreTrainedModel, inputs_embeds: torch.Tensor) -> torch.Tensor:
        enc = hf.model.encoder
        positions = enc.embed_positions(inputs_embeds[:, :, -1])
        return enc.layernorm_embedding(inputs_embeds + positions.to(inputs_embeds.device))

    @staticmethod
    def encode(hf: PreTrainedModel, hidden: torch.Tensor, mask: torch.Tensor, n_text: int) -> torch.Tensor:
        enc = hf.model.encoder
        hidden = nn.functional.dropout(hidden, p=enc.dropout, training=enc.training)
        attn_mask = create_bidirectional_mask(config=enc.config, inputs_embeds=hidden, attention_mask=mask)
        for layer in enc.layers:
            hidden = layer(hidden, attn_mask)
        return hidden


class _T5Text:
    """T5 encoder stack with the relative position bias restricted to text x text pairs."""

    @staticmethod
    def embed(hf: PreTrainedModel, inputs_embeds: torch.Tensor) -> torch.Tensor:
        return inputs_embeds

    @staticmethod
    def encode(hf: PreTrainedModel, hidden: torch.Tensor, mask: torch.Tensor, n_text: int) -> torch.Tensor:
        enc = hf.encoder
        attn_mask = create_bidirectional_mask(config=enc.config, inputs_embeds=hidden, attention_mask=mask)
        total = hidden.shape[1]
        # the first block owns the relative bias (found by type: PET methods may wrap its attention)
        owner = next(m for m in enc.block[0].modules() if isinstance(m, T5Attention) and m.has_relative_attention_bias)
        text_bias = owner.compute_bias(n_text, n_text, device=hidden.device)
        bias = text_bias.new_zeros(1, text_bias.shape[1], total, total)
        bias[:, :, :n_text, :n_text] = text_bias
        bias = bias.to(hidden.dtype)
        hidden = enc.dropout(hidden)
        for block in enc.block:
            hidden = block(hidden, attn_mask, bias)[0]
        return enc.dropout(enc.final_layer_norm(hidden))


TEXT_ENCODERS = {"bart": _BartText, "t5": _T5Text}


@dataclass
class VLInputs:
    """One batch of encoder inputs. vis_feats: [B, L, F] or [B, I, L, F]; boxes optional."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    vis_feats: torch.Tensor
    boxes: torch.Tensor | None = None


class VLModel(nn.Module):
    """VL-BART or VL-T5. Holds the HF model (`backbone`), the visual embedding and any PET method.

    PET methods are injected into `backbone` by `vlpet.methods.apply_method`; an optional
    `pet_prompt` module (prompt tuning) supplies embeddings prepended to the text.
    """

    def __init__(self, backbone: PreTrainedModel, cfg: BackboneConfig, tokenizer: PreTrainedTokenizerBase | None = None):
        super().__init__()
        self.backbone = backbone
        self.backbone_config = cfg
        self.family: str = backbone.config.model_type
        self.layout: Layout = LAYOUTS[self.family]
        self.tokenizer = tokenizer
        self.visual_embedding = VisualEmbedding(cfg.feat_dim, self.d_model, self.family, cfg.n_boxes)
        self.pet_prompt: nn.Module | None = None
        self.method: Any = None  # the applied MethodConfig, set by apply_method
        self.active_task: str | None = None  # the task named by the last set_task call

    def set_task(self, task: str | None) -> None:
        """Name the task of the following forward / generate calls (e.g. "vqa"). Task-conditioned PET
        modules (Hyperformer's hyper-networks) declare an `active_task` attribute and receive it
        here; every other method ignores it. Call it before each single-task batch."""
        for module in self.modules():
            if hasattr(module, "active_task"):
                module.active_task = task

    @property
    def d_model(self) -> int:
        """Hidden size of the backbone."""
        return self.backbone.config.d_model

    @property
    def pad_token_id(self) -> int:
        """Padding id of the backbone's vocabulary."""
        return self.backbone.config.pad_token_id

    def encode(self, batch: VLInputs) -> tuple[BaseModelOutput, torch.Tensor]:
        """Run the encoder on [prompt ; text ; visual]; returns its output and the full attention mask."""
        text_encoder = TEXT_ENCODERS[self.family]
        table = self.backbone.get_input_embeddings()
        text = table(batch.input_ids)
        mask = batch.attention_mask
        if self.pet_prompt is not None:
            prompt = self.pet_prompt(text.shape[0]).to(text.dtype)
            text = torch.cat([prompt, text], dim=1)
            mask = torch.cat([mask.new_ones(prompt.shape[:2]), mask], dim=1)
        text = text_encoder.embed(self.backbone, text)
        visual = self.visual_embedding(batch.vis_feats, table, batch.boxes).to(text.dtype)
        hidden = torch.cat([text, visual], dim=1)
        mask = torch.cat([mask, mask.new_ones(visual.shape[:2])], dim=1)
        hidden = text_encoder.encode(self.backbone, hidden, mask, text.shape[1])
        return BaseModelOutput(last_hidden_state=hidden), mask

    def forward(self, batch: VLInputs, labels: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None) -> Seq2SeqLMOutput:
        """Teacher-forced decoder logits; `labels` (pad = -100) give `decoder_input_ids` by a right shift."""
        encoder_outputs, mask = self.encode(batch)
        return self.backbone(encoder_outputs=encoder_outputs, attention_mask=mask, labels=labels,
                             decoder_input_ids=decoder_input_ids, use_cache=False)

    @torch.no_grad()
    def generate(self, batch: VLInputs, **generate_kwargs: Any) -> torch.Tensor:
        """Token ids generated by the HF `generate()` from the VL encoder output (beam search etc. as given)."""
        encoder_outputs, mask = self.encode(batch)
        return self.backbone.generate(encoder_outputs=encoder_outputs, attention_mask=mask, **generate_kwargs)


VISUAL_WEIGHTS = "visual_embedding.safetensors"


def save_vl_pretrained(model: VLModel, directory: str | Path) -> Path:
    """Save a VL-pretrained backbone: the HF model and tokenizer, plus the visual embedding beside them."""
    directory = Path(directory)
    model.backbone.save_pretrained(directory)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(directory)
    save_file({k: v.contiguous() for k, v in model.visual_embedding.state_dict().items()}, str(directory / VISUAL_WEIGHTS))
    return directory


def _load_visual(model: VLModel, directory: Path) -> None:
    """Load a VL-pretrained visual embedding saved beside the backbone, if there is one."""
    path = directory / VISUAL_WEIGHTS
    if not path.is_file():
        return
    tensors = load_file(str(path))
    expected = model.visual_embedding.state_dict()
    for name, tensor in tensors.items():
        if name not in expected or expected[name].shape != tensor.shape:
            raise ConfigError(f"{path}: {name} has shape {tuple(tensor.shape)}, but backbone.feat_dim="
                              f"{model.backbone_config.feat_dim} needs {tuple(expected[name].shape) if name in expected else '-'}")
    model.visual_embedding.load_state_dict(tensors)


def build_vl_model(cfg: BackboneConfig, load_weights: bool = True) -> VLModel:
    """Build VL-BART / VL-T5 from a backbone config: tokenizer (if any), HF model, visual embedding
    (loaded too when a VL-pretrained directory carries one). `load_weights=False` gives the
    architecture only, e.g. under `torch.device("meta")` to count parameters."""
    tokenizer = load_tokenizer(cfg)
    hf_model = build_hf_model(cfg, len(tokenizer) if tokenizer is not None else None, load_weights)
    model = VLModel(hf_model, cfg, tokenizer)
    if load_weights and cfg.pretrained is not None and Path(cfg.pretrained_path).expanduser().is_dir():
        _load_visual(model, Path(cfg.pretrained_path).expanduser())
    return model
