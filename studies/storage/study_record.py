"""The study's record: what makes a study directory usable, and `study.json`, which describes the study it holds.

study.json records the study's config (its sections, as `StudyConfig.to_dict`), its backbone (for the
report), an id, and the directory it was created in. A resumed study takes its config from there, and is
refused where Tune's saved state would write elsewhere: Tune pickles its callbacks and searcher with
the absolute paths of the directory it ran in, so a copied or moved study would append to the original.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from analysis.study_layout import RESULTS, STUDY_JSON
from studies.plan.study_config import STUDY_SECTIONS
from studies.storage.results_table import results_study_id
from vlpet.errors import ConfigError


def check_study_dir(study_dir: Path, resume: bool, min_free_mb: int = 200) -> dict[str, Any] | None:
    """The study directory must be new (or, resumed, hold a study), writable, and on a disk with room.
    Returns a resumed study's study.json (`recorded`), None for a new study. Writes nothing: a directory
    that does not exist yet is judged by the nearest one above it, and made when the study starts."""
    record = recorded(study_dir) if resume else None  # exists, readable, created here
    if not resume and (study_dir / RESULTS).is_file():
        raise ConfigError(f"{study_dir} already holds a study; pass --resume to continue it or choose another --name")
    existing = next(p for p in (study_dir, *study_dir.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        what = "is not a directory" if not existing.is_dir() else "is not writable"
        raise ConfigError(f"study directory {study_dir} is not writable ({existing} {what}); choose --study-dir")
    free_mb = shutil.disk_usage(existing).free / 2**20
    if free_mb < min_free_mb:
        raise ConfigError(f"study directory {study_dir}: only {free_mb:.0f} MB free, need >= {min_free_mb} MB")
    return record


def describe(config: dict[str, Any], backbone: str, study_dir: Path) -> dict[str, Any]:
    """A new study's study.json: its config sections, backbone, a new id and where it is created."""
    return {**config, "backbone": backbone, "study_id": uuid.uuid4().hex, "created_in": str(study_dir.resolve())}


def write(study_dir: Path, record: dict[str, Any]) -> None:
    """Write study.json, making the directory of a new study."""
    study_dir.mkdir(parents=True, exist_ok=True)
    (study_dir / STUDY_JSON).write_text(json.dumps(record, indent=2))


def recorded(study_dir: Path) -> dict[str, Any]:
    """The study.json of a study to resume, checked: present, readable, and in the directory it was created in."""
    path = study_dir / STUDY_JSON
    if not path.is_file():
        raise ConfigError(f"--resume: {study_dir} holds no study (no {STUDY_JSON}); run without --resume to start it")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--resume: {path} is not a readable study description ({err})") from None
    if not isinstance(record, dict) or not all(isinstance(record.get(s), dict) for s in STUDY_SECTIONS):
        raise ConfigError(f"--resume: {path} lacks the study's config ({', '.join(STUDY_SECTIONS)} sections)")
    table_id = results_study_id(study_dir / RESULTS)
    if table_id and record.get("study_id") and table_id != record["study_id"]:
        raise ConfigError(f"--resume: {study_dir / RESULTS} belongs to another study (id {table_id}, {STUDY_JSON} "
                          f"says {record['study_id']}); restore this study's own results table or start a new study")
    created = record.get("created_in")
    if created and Path(created) != study_dir.resolve():
        raise ConfigError(f"--resume: the study in {study_dir} was created in {created} and Tune's saved state still "
                          f"points there; resume it in its own directory (move it back) or start a new study")
    return record


def recorded_config(record: dict[str, Any]) -> dict[str, Any]:
    """The config sections of a study.json."""
    return {s: record[s] for s in STUDY_SECTIONS}


def first_difference(recorded_cfg: Any, given: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first value that differs between two configs (plain dicts): (dotted key, recorded, given), or None."""
    if isinstance(recorded_cfg, dict) and isinstance(given, dict):
        for key in sorted(recorded_cfg.keys() | given.keys(), key=str):
            found = first_difference(recorded_cfg.get(key), given.get(key), f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    return None if recorded_cfg == given else (where, recorded_cfg, given)
