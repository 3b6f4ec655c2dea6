"""VL-PET: granularity-controlled parameter-efficient tuning of VL-BART / VL-T5 on unmodified HF models."""

from vlpet.errors import ConfigError

__all__ = ["ConfigError"]
