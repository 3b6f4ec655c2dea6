"""The import contracts of pyproject.toml ([tool.importlinter]) hold for the tree, and catch what they forbid:
an upward import (the core library importing the study side), a cycle among a package's modules, an import
between the study side's independent layers, and Ray in the study's plan."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("vlpet", "analysis", "studies", "cluster")

# (module file, line appended to it, what lint-imports must then say)
PLANTED = {
    "upward import": ("vlpet/params.py", "import studies.plan.trial_run", "vlpet is not allowed to import studies"),
    "cycle": ("analysis/table.py", "import analysis.report", "No cycles are allowed in analysis"),
    "sideways in studies": ("studies/storage/results_table.py", "import studies.search.front_model",
                            "studies.storage is not allowed to import studies.search"),
    "ray in the plan": ("studies/plan/search_space.py", "import ray", "studies.plan is not allowed to import ray"),
}


def lint(tree: Path) -> subprocess.CompletedProcess:
    # from `tree`, so that its packages (first on the path) are the ones analysed
    return subprocess.run([str(LINT), "--no-cache", "--no-logo"], cwd=tree, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_tree_keeps_its_import_contracts():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 4 kept, 0 broken." in done.stdout, done.stdout


@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_a_planted_import_breaks_a_contract(planted, tmp_path):
    module, line, message = PLANTED[planted]
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "assets"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / module).open("a") as f:
        f.write(f"\n{line}  # planted\n")
    done = lint(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stdout and "1 broken" in done.stdout, done.stdout


@pytest.mark.parametrize("command", ["studies.frontier", "studies.train_one"])
def test_a_command_that_starts_ray_imports_no_ray_before_it_runs(command):
    """Ray reads its loopback setting once, when first imported (studies/driver/ray_cluster.py), so the commands
    that start a local cluster import only Ray-free modules until main() has called loopback_local_cluster():
    their top-level imports are the plan (which imports no Ray, a contract above) and ray_cluster."""
    code = f"import sys, {command}; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", f"importing {command} imports ray before main() runs"
