"""Visual feature stores in the on-disk formats of the paper's data (spec 7), read lazily.

Image features: one HDF5 file per image, `<dir>/<img_id>.h5`, holding group `<img_id>` with dataset
`features` of shape [49, 2048] (CLIP RN101 7x7 grid, usually float16). Only the requested image is
read; files are opened per access so the store is safe to use from DataLoader worker processes.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from vlpet.errors import ConfigError

GRID_TOKENS = 49  # 7x7 CLIP RN101 grid


class H5FeatureStore:
    """Per-image HDF5 features under one directory, validated against the expected shape."""

    def __init__(self, directory: str | Path, feat_dim: int, n_tokens: int = GRID_TOKENS):
        self.directory = Path(directory)
        self.shape = (n_tokens, feat_dim)
        if not self.directory.is_dir():
            raise ConfigError(f"{self.directory}: feature directory not found; expected one <img_id>.h5 per image "
                              f"with dataset '<img_id>/features' of shape {list(self.shape)} (see README, data layout)")

    def path(self, img_id: str) -> Path:
        """The file holding `img_id`."""
        return self.directory / f"{img_id}.h5"

    def check(self, img_id: str) -> None:
        """Raise a ConfigError unless `img_id` is present with the expected shape (no data read)."""
        self._open_dataset(img_id, lambda ds: None)

    def __call__(self, img_id: str) -> np.ndarray:
        """The float32 feature array of one image, shape [n_tokens, feat_dim]."""
        return self._open_dataset(img_id, lambda ds: ds[()].astype(np.float32))

    def _open_dataset(self, img_id: str, read):
        path = self.path(img_id)
        if not path.is_file():
            raise ConfigError(f"{path}: missing feature file for image {img_id!r} (expected '{img_id}/features' "
                              f"of shape {list(self.shape)})")
        try:
            with h5py.File(path, "r") as f:
                key = f"{img_id}/features"
                if key not in f:
                    raise ConfigError(f"{path}: no dataset {key!r}; found keys {list(f.keys())[:5]}")
                ds = f[key]
                if tuple(ds.shape) != self.shape:
                    raise ConfigError(f"{path}: {key} has shape {list(ds.shape)}, expected {list(self.shape)} "
                                      "(check backbone.feat_dim and the feature type)")
                return read(ds)
        except OSError as err:
            raise ConfigError(f"{path}: not a readable HDF5 file ({err})") from None


def write_h5_features(directory: str | Path, img_id: str, features: np.ndarray) -> Path:
    """Write one image's features in the paper's layout (used by the synthetic benchmark)."""
    path = Path(directory) / f"{img_id}.h5"
    with h5py.File(path, "w") as f:
        f.create_group(img_id).create_dataset("features", data=features)
    return path
