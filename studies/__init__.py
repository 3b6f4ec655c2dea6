"""The study side: entry points, search spaces, study configs and the Ray Tune + Optuna driver."""
