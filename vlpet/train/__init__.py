"""Training: run configs, the loop, evaluation, and the Ray Train wrapper."""
