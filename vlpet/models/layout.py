"""Where things sit inside an unmodified HF BART or T5: the only place that knows their module paths.

PET methods never hard-code a module path; they ask a `Layout` for the layers of a stack, the
sub-layer sites of a layer, the attention projections and the layer norms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn
from transformers import PreTrainedModel
from transformers.models.t5.modeling_t5 import T5LayerNorm

Stack = Literal["encoder", "decoder"]
SiteName = Literal["self_attn", "cross_attn", "ffn"]


@dataclass(frozen=True)
class Site:
    """A sub-layer of a transformer layer.

    `tap` is the module whose forward input is the residual stream X entering the sub-layer (the
    granularity gates read it); `out` is the module whose output is the frozen sub-layer output H,
    before dropout and the residual add. Paths are relative to the layer.
    """

    tap: str
    out: str


@dataclass(frozen=True)
class Layout:
    """Module paths of one backbone family."""

    family: str
    encoder_layers_path: str
    decoder_layers_path: str
    encoder_sites: dict[str, Site]
    decoder_sites: dict[str, Site]
    query_proj: str
    value_proj: str
    layer_norm_types: tuple[type[nn.Module], ...]

    def layers(self, hf_model: PreTrainedModel, stack: Stack) -> list[nn.Module]:
        """The transformer layers (BartEncoderLayer / T5Block ...) of one stack, in order."""
        path = self.encoder_layers_path if stack == "encoder" else self.decoder_layers_path
        return list(hf_model.get_submodule(path))

    def sites(self, stack: Stack) -> dict[str, Site]:
        """The sub-layer sites of a layer of `stack`, by name (self_attn, cross_attn, ffn)."""
        return self.encoder_sites if stack == "encoder" else self.decoder_sites

    def attentions(self, hf_model: PreTrainedModel) -> list[nn.Module]:
        """Every attention module: encoder self, decoder self and decoder cross-attention."""
        found = []
        for stack in ("encoder", "decoder"):
            for layer in self.layers(hf_model, stack):
                for name, site in self.sites(stack).items():
                    if name != "ffn":
                        found.append(layer.get_submodule(site.out))
        return found

    def cross_attentions(self, hf_model: PreTrainedModel) -> list[nn.Module]:
        """The decoder's cross-attention modules, one per decoder layer."""
        return [layer.get_submodule(self.decoder_sites["cross_attn"].out) for layer in self.layers(hf_model, "decoder")]

    def stack_root(self, stack: Stack) -> str:
        """Path of the stack module (its parameters all start with this prefix)."""
        return self.encoder_layers_path.rsplit(".", 1)[0] if stack == "encoder" else self.decoder_layers_path.rsplit(".", 1)[0]


BART = Layout(
    family="bart",
    encoder_layers_path="model.encoder.layers",
    decoder_layers_path="model.decoder.layers",
    encoder_sites={"self_attn": Site("self_attn", "self_attn"), "ffn": Site("fc1", "fc2")},
    decoder_sites={
        "self_attn": Site("self_attn", "self_attn"),
        "cross_attn": Site("encoder_attn", "encoder_attn"),
        "ffn": Site("fc1", "fc2"),
    },
    query_proj="q_proj",
    value_proj="v_proj",
    layer_norm_types=(nn.LayerNorm,),
)

T5 = Layout(
    family="t5",
    encoder_layers_path="encoder.block",
    decoder_layers_path="decoder.block",
    encoder_sites={"self_attn": Site("layer.0", "layer.0.SelfAttention"), "ffn": Site("layer.1", "layer.1.DenseReluDense")},
    decoder_sites={
        "self_attn": Site("layer.0", "layer.0.SelfAttention"),
        "cross_attn": Site("layer.1", "layer.1.EncDecAttention"),
        "ffn": Site("layer.2", "layer.2.DenseReluDense"),
    },
    query_proj="q",
    value_proj="v",
    layer_norm_types=(T5LayerNorm, nn.LayerNorm),
)

LAYOUTS = {"bart": BART, "t5": T5}
