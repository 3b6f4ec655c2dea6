"""PET methods: typed configs registered by name, injected into unmodified HF models by `apply_method`."""

from vlpet.methods import adapter, bitfit, compacter, full, hyperformer, ia3, lora, prompt, vlpet  # noqa: F401  (registration)
from vlpet.methods.base import METHODS, MethodConfig, apply_method, method_from_dict

__all__ = ["METHODS", "MethodConfig", "apply_method", "method_from_dict"]
