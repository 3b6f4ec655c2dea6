"""VL-BART / VL-T5 built on unmodified Hugging Face models."""

from vlpet.models.backbones import PRESETS, BackboneConfig
from vlpet.models.vl_model import VLInputs, VLModel, build_vl_model

__all__ = ["PRESETS", "BackboneConfig", "VLInputs", "VLModel", "build_vl_model"]
