"""Bad input to every command: exit status 2, one `error:` line that names the field or flag, no traceback,
and every file in the directories the command was pointed at left byte-identical (docs/reliability.md)."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

from studies.dashboard import main as dashboard_main
from studies.export import main as export_main
from studies.frontier import main as study_main
from studies.predict import main as predict_main
from studies.report_command import main as report_main
from studies.train_one import main as train_main
from vlpet.params import main as params_main

COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "vlpet-study": study_main, "vlpet-report": report_main, "vlpet-dashboard": dashboard_main,
    "vlpet-predict": predict_main, "vlpet-train": train_main, "vlpet-params": params_main,
    "vlpet-export": export_main}


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A directory holding what the bad inputs point at: damaged studies, malformed configs, a file."""
    root = tmp_path_factory.mktemp("bad-input")
    for name in ("good", "damaged", "empty-db", "bad-storage"):
        (root / name).mkdir()
    storage = f"sqlite:///{root / 'good' / 'optuna.db'}"
    optuna.create_study(study_name="s", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    db = root / "damaged" / "optuna.db"
    db.write_bytes((root / "good" / "optuna.db").read_bytes())
    db.write_bytes(db.read_bytes()[:8000])  # truncated mid-file
    (root / "empty-db" / "optuna.db").touch()
    (root / "bad-storage" / "study.json").write_text(json.dumps({"study": {"optuna_storage": 5}}))
    configs = {"run-list.yaml": "run:\n  - a\n  - b\n",
               "empty-pretrained.yaml": "run:\n  backbone:\n    pretrained: ''\n",
               "unclosed.yaml": "study:\n  name: x\n  variants: [a, b\n",
               "long-name.yaml": "study:\n  name: " + "x" * 5000 + "\n",
               "long-value.yaml": "study:\n  trials_per_variant: '" + "9" * 3000 + "'\n",
               "not-utf8.yaml": "study:\n  name: caf\xe9\n",
               "tracking-unknown.yaml": "study:\n  tracking: [wandb]\n",
               "tracking-no-server.yaml": "study:\n  tracking: [mlflow]\n",
               "tracking-down.yaml": "study:\n  tracking: [mlflow]\n  mlflow_uri: http://127.0.0.1:9\n",
               "tracking-password.yaml": "study:\n  tracking: [mlflow]\n  mlflow_uri: http://u:S3cr3t@127.0.0.1:9\n"}
    for name, text in configs.items():
        (root / name).write_bytes(text.encode("latin-1"))
    (root / "a-file").write_text("not a directory")
    return root


@pytest.fixture(scope="module")
def busy_port() -> Iterator[str]:
    """A port on loopback that something already listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield str(s.getsockname()[1])


BAD = [  # (command, arguments with {p} for the place, what the error line says)
    ("vlpet-study", ["--config", "{p}/run-list.yaml"], "run config must be a mapping with sections"),
    ("vlpet-study", ["--config", "{p}/empty-pretrained.yaml"], "backbone.pretrained='' is empty"),
    ("vlpet-study", ["--config", "{p}/unclosed.yaml"], "unclosed.yaml: invalid YAML at line 4, column 1: expected ','"),
    ("vlpet-study", ["--config", "{p}/long-name.yaml"], (r"study.name='xxxx.*\.\.\. \(5,002 characters\) must be a "
                                                        "directory name of at most 100 characters")),
    ("vlpet-study", ["--config", "{p}/long-value.yaml"], r"study.trials_per_variant='9999.*\.\.\. \(3,002 characters\)"),
    ("vlpet-study", ["--config", "{p}/not-utf8.yaml"], "not-utf8.yaml: not UTF-8 text"),
    ("vlpet-study", ["--seed", "-1"], "argument --seed: '-1' is not a seed"),
    ("vlpet-study", ["--config", "{p}/tracking-unknown.yaml"], "study.tracking entry 'wandb'"),
    ("vlpet-study", ["--config", "{p}/tracking-no-server.yaml"], "study.tracking names mlflow but no server is given"),
    ("vlpet-study", ["--config", "{p}/tracking-down.yaml"], "study.mlflow_uri=http://127.0.0.1:9: no MLflow tracking"),
    ("vlpet-study", ["--config", "{p}/tracking-password.yaml"], r"mlflow_uri=http://u:\*\*\*@127.0.0.1:9 holds a password"),
    ("vlpet-study", ["--trials", "0"], "argument --trials: '0' is not an integer >= 1"),
    ("vlpet-report", ["{p}/a-file"], "a-file"),
    ("vlpet-report", ["{p}/damaged"], "no results table: expected .*damaged/results.parquet"),
    ("vlpet-dashboard", ["{p}/damaged"], ("cannot read the Optuna storage sqlite:///.*damaged/optuna.db: "
                                         r"\(sqlite3.DatabaseError\)")),
    ("vlpet-dashboard", ["{p}/empty-db"], "empty-db/optuna.db is empty"),
    ("vlpet-dashboard", ["{p}/bad-storage"], "study.optuna_storage=5 is not a storage URL"),
    ("vlpet-dashboard", ["{p}/good", "--port", "{busy}"], r"--port \d+: port \d+ on 127.0.0.1 is in use; pick another"),
    ("vlpet-dashboard", ["{p}/damaged", "--port", "0"], "argument --port: '0' is not a port"),
    ("vlpet-dashboard", ["{p}/damaged", "--port", "65536"], "argument --port: '65536' is not a port"),
    ("vlpet-predict", ["{p}/damaged", "--config", "{p}/run-list.yaml", "--device", "cuda:7"],
     "--device cuda:7: this machine has no CUDA device"),
    ("vlpet-predict", ["{p}/damaged", "--config", "{p}/run-list.yaml", "--device", "nonsense"],
     "--device 'nonsense' is not a torch device"),
    ("vlpet-predict", ["{p}/damaged", "--config", "{p}/run-list.yaml", "--output", "{p}/a-file"],
     "--output .*a-file is a file; give a directory"),
    ("vlpet-train", ["--config", "{p}/unclosed.yaml"], "invalid YAML at line 4"),
    ("vlpet-train", ["--config", "{p}/missing.yaml"], "missing.yaml: config file not found"),
    ("vlpet-params", ["--backbone", "bart-huge"], "--backbone 'bart-huge'"),
    ("vlpet-export", ["{p}/a-file", "--front"], "study directory not found: .*a-file"),
    ("vlpet-export", ["{p}/damaged", "--best"], "no results table: expected .*damaged/results.parquet"),
    ("vlpet-export", ["{p}/damaged"], "one of the arguments --trial --best --front is required"),
]


@pytest.mark.parametrize("command, args, says", BAD, ids=[f"{c} {' '.join(a)}" for c, a, _ in BAD])
def test_bad_input_is_one_error_line_and_touches_no_file(place, busy_port, capsys, monkeypatch, command, args, says):
    import re

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(place)  # a command that wrote a default directory would write it here, and fail the check
    before = checksums(place)
    try:
        code = COMMANDS[command]([a.replace("{p}", str(place)).replace("{busy}", busy_port) for a in args])
    except SystemExit as stop:  # argparse's own refusals
        code = stop.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and re.search(says, lines[-1]), err
    assert len([line for line in lines if "error:" in line]) == 1, err
    assert checksums(place) == before, f"{command} changed files it was pointed at"


CLUSTER_BAD = [  # (file name, its bytes, what the FAIL line says): vlpet-cluster-validate's own contract is one
    # line per file and exit status 1 when any file is invalid (a CI gate), so an unreadable file is one of those
    ("missing.yaml", None, "cannot read it (No such file or directory)"),
    ("unclosed.yaml", b"provider:\n  type: [aws\n", "invalid YAML at line 3, column 1: expected ',' or ']'"),
    ("latin1.yaml", "cluster_name: caf\xe9\n".encode("latin-1"), "not UTF-8 text (invalid continuation byte"),
    ("empty.yaml", b"", "expected one YAML mapping"),
    ("a-list.yaml", b"- provider\n- auth\n", "expected one YAML mapping"),
]


@pytest.mark.parametrize("name, content, says", CLUSTER_BAD, ids=[name for name, _, _ in CLUSTER_BAD])
def test_cluster_validate_says_what_is_wrong_in_one_line_and_touches_no_file(tmp_path, capsys, name, content, says):
    from cluster.validate import main as validate_main

    if content is not None:
        (tmp_path / name).write_bytes(content)
    before = checksums(tmp_path)
    code = validate_main([str(tmp_path / name)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith(f"FAIL {tmp_path / name}: ")]
    assert len(err.splitlines()) == 1 and says in err, err
    assert checksums(tmp_path) == before
