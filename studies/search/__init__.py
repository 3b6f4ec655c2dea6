"""How trials are chosen and stopped: the per-variant Optuna searches, the front sampler, the early stopping."""
