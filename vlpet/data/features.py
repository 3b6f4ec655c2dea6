"""Visual feature stores in the on-disk formats of the paper's data, read lazily.

Image features: one HDF5 file per image, `<dir>/<img_id>.h5`, holding group `<img_id>` with dataset
`features` of shape [49, 2048] (CLIP RN101 7x7 grid, usually float16).

Video features: one NumPy archive per video, `<dir>/<vid_name>.npz`, holding array `features` of shape
[T, 512] (one CLIP-ViT vector per frame, T varies). Each video is brought to exactly 64 frame tokens as
the paper's loaders do: zero-padded when T < 64, adaptive 1-D max-pooled when T > 64.

Only the requested image or video is read; files are opened per access so the stores are safe to use
from DataLoader worker processes. What was read is kept in a per-process cache (`FeatureCache`, up to
`CACHE_BYTES`), so later epochs, and later trials in a reused trial process, read no file again.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from vlpet.errors import ConfigError

GRID_TOKENS = 49  # 7x7 CLIP RN101 grid
VIDEO_FRAMES = 64  # frame tokens per video after padding / pooling
# Opening an HDF5 file costs ~1 ms, a fifth of an embedded training epoch; 2 GiB holds the whole embedded
# benchmark many times over and ~10k bart-base images (200 KB each): beyond that, files are read as before.
CACHE_BYTES = 2 * 2**30


class FeatureCache:
    """Feature arrays already read by this process, keyed by file, size and modification time (a rewritten
    file is read again). Filled until `limit` bytes, then it stops growing: no eviction, so a dataset larger
    than the cache keeps its first files cached and reads the rest each time. Arrays are read-only."""

    def __init__(self, limit: int = CACHE_BYTES):
        self.limit, self.used = limit, 0
        self.arrays: dict[tuple, np.ndarray] = {}

    def get(self, path: Path, read: Callable[[], np.ndarray], form: tuple[int, ...]) -> np.ndarray:
        """The array `read()` gives for `path` in the shape `form` (a store's output shape), read once."""
        try:
            stat = path.stat()
        except OSError:
            return read()  # missing: the reader raises its error
        key = (str(path), stat.st_size, stat.st_mtime_ns, form)
        array = self.arrays.get(key)
        if array is None:
            array = read()
            if self.used + array.nbytes <= self.limit:
                array.setflags(write=False)
                self.arrays[key] = array
                self.used += array.nbytes
        return array


CACHE = FeatureCache()


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
        """The float32 feature array of one image, shape [n_tokens, feat_dim] (read-only: cached)."""
        path = self.path(img_id)
        return CACHE.get(path, lambda: finite(self._open_dataset(img_id, lambda ds: ds[()].astype(np.float32)), path), self.shape)

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


def finite(features: np.ndarray, path: Path) -> np.ndarray:
    """`features`, unless they hold NaN or infinity (a model fed them would train or score on garbage)."""
    if not np.isfinite(features).all():
        bad = int((~np.isfinite(features)).sum())
        raise ConfigError(f"{path}: {bad} of {features.size} feature values are NaN or infinite; re-extract the features")
    return features


def write_h5_features(directory: str | Path, img_id: str, features: np.ndarray) -> Path:
    """Write one image's features in the paper's layout (used by the synthetic benchmark)."""
    path = Path(directory) / f"{img_id}.h5"
    with h5py.File(path, "w") as f:
        f.create_group(img_id).create_dataset("features", data=features)
    return path


def fit_frames(frames: np.ndarray, n_frames: int = VIDEO_FRAMES) -> np.ndarray:
    """[T, F] frame features -> [n_frames, F]: zero rows appended when T < n_frames, adaptive 1-D max-pooling
    (torch's `adaptive_max_pool1d` windows: [floor(i T / n), ceil((i + 1) T / n))) when T > n_frames."""
    length, dim = frames.shape
    if length < n_frames:
        return np.concatenate([frames, np.zeros((n_frames - length, dim), frames.dtype)])
    if length > n_frames:
        idx = np.arange(n_frames)
        starts, ends = idx * length // n_frames, -(-(idx + 1) * length // n_frames)
        return np.stack([frames[s:e].max(axis=0) for s, e in zip(starts, ends)])
    return frames


class NpzFrameStore:
    """Per-video frame features `<dir>/<vid_name>.npz` (key `features`, [T, feat_dim]) under one directory,
    validated and returned as [n_frames, feat_dim] float32."""

    key = "features"

    def __init__(self, directory: str | Path, feat_dim: int, n_frames: int = VIDEO_FRAMES):
        self.directory = Path(directory)
        self.feat_dim, self.n_frames = feat_dim, n_frames
        if not self.directory.is_dir():
            raise ConfigError(f"{self.directory}: frame feature directory not found; expected one <vid_name>.npz per "
                              f"video with array '{self.key}' of shape [T, {feat_dim}] (see README, data layout)")

    def path(self, vid_name: str) -> Path:
        """The file holding `vid_name`."""
        return self.directory / f"{vid_name}.npz"

    def check(self, vid_name: str) -> None:
        """Raise a ConfigError unless `vid_name` is present with [T, feat_dim] features (frame files are small,
        so this reads the array)."""
        self._read(vid_name)

    def __call__(self, vid_name: str) -> np.ndarray:
        """The float32 frame features of one video, shape [n_frames, feat_dim] (read-only: cached)."""
        return CACHE.get(self.path(vid_name), lambda: fit_frames(self._read(vid_name).astype(np.float32), self.n_frames),
                         (self.n_frames, self.feat_dim))

    def _read(self, vid_name: str) -> np.ndarray:
        path = self.path(vid_name)
        if not path.is_file():
            raise ConfigError(f"{path}: missing frame feature file for video {vid_name!r} (expected array "
                              f"'{self.key}' of shape [T, {self.feat_dim}])")
        try:
            archive = np.load(path)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ConfigError(f"{path}: holds a bare array; expected an .npz archive with key {self.key!r}")
            with archive:
                if self.key not in archive.files:
                    raise ConfigError(f"{path}: no array {self.key!r}; found keys {archive.files[:5]}")
                frames = archive[self.key]
        except ConfigError:
            raise
        except (OSError, ValueError, zipfile.BadZipFile) as err:  # truncated, not a zip, pickled object arrays
            raise ConfigError(f"{path}: not a readable .npz archive ({err})") from None
        if frames.ndim != 2 or frames.shape[0] == 0 or frames.shape[1] != self.feat_dim:
            raise ConfigError(f"{path}: {self.key} has shape {list(frames.shape)}, expected [T, {self.feat_dim}] with "
                              "T >= 1 (check backbone.feat_dim; CLIP-ViT frame features are 512-d)")
        return finite(frames, path)


def write_npz_features(directory: str | Path, vid_name: str, frames: np.ndarray) -> Path:
    """Write one video's [T, F] frame features in the paper's layout (used by the synthetic video benchmark)."""
    path = Path(directory) / f"{vid_name}.npz"
    np.savez(path, features=frames)
    return path
