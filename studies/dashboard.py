"""A study's Optuna searches (one per variant: trials, Pareto front, parameter importances) in optuna-dashboard,
served on 127.0.0.1 only.

    vlpet-dashboard runs/studies/embedded                 # then open http://127.0.0.1:8080
    ssh -L 8080:127.0.0.1:8080 HEAD                       # from your laptop, for a study on a cluster's head

Reads the study's Optuna storage: study.optuna_storage of its study.json (PostgreSQL on clusters), else
<study_dir>/optuna.db. Needs the `dashboard` extra: pip install -e ".[dashboard]".
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
from pathlib import Path

from analysis.study_layout import OPTUNA_DB, STUDY_JSON
from studies.driver.ray_cluster import LOOPBACK
from vlpet.errors import ConfigError, entry_point, redact


def study_storage_url(study_dir: Path) -> str:
    """The Optuna storage URL of the study in `study_dir`."""
    record = study_dir / STUDY_JSON
    url = None
    if record.is_file():
        try:
            url = (json.loads(record.read_text()).get("study") or {}).get("optuna_storage")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
            raise ConfigError(f"{record} is not a readable study description ({err})") from None
    if url is not None and not isinstance(url, str):
        raise ConfigError(f"{record}: study.optuna_storage={url!r} is not a storage URL; set it to a string such as "
                          "postgresql://user@host/db, or remove it to use the study's optuna.db")
    if url:
        return url
    db = study_dir / OPTUNA_DB
    if not db.is_file():
        raise ConfigError(f"{study_dir} holds no Optuna storage (no {db.name}, no study.optuna_storage in study.json); "
                          "give the directory of a study that has run (runs/studies/<name>)")
    if db.stat().st_size == 0:  # Optuna would write a fresh schema into it
        raise ConfigError(f"{db} is empty: the study's searches are lost; resume the study from its home, or give "
                          "the directory of a study that has run")
    return f"sqlite:///{db.resolve()}"


def port_number(text: str) -> int:
    """An argparse type: a TCP port 1-65535 (0, 'any free port', would hide where the dashboard is)."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give an integer from 1 to 65535")
    return int(text)


def check_port_free(port: int) -> None:
    """Fail in one line when `port` on loopback is taken, before the server starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError as err:
            why = "is in use" if err.errno == errno.EADDRINUSE else f"cannot be opened ({err.strerror})"
            raise ConfigError(f"--port {port}: port {port} on {LOOPBACK} {why}; pick another with --port") from None


def check_storage(url: str) -> None:
    """Open the storage once, so that a damaged optuna.db or an unreachable database is one line."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        optuna.get_all_study_names(storage=url)
    except (SQLAlchemyError, OSError, ValueError, RuntimeError) as err:  # all mean: not a readable storage
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ConfigError(f"cannot read the Optuna storage {redact(url)}: {first}") from None


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Serve the dashboard until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study_dir", type=Path, help="the study's directory (runs/studies/<name>)")
    parser.add_argument("--port", type=port_number, default=8080, help="port on 127.0.0.1 (default 8080)")
    args = parser.parse_args(argv)
    url = study_storage_url(args.study_dir)
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError('optuna-dashboard is not installed: pip install -e ".[dashboard]"') from None
    check_storage(url)
    check_port_free(args.port)
    print(f"optuna-dashboard of {args.study_dir} ({redact(url)}) on http://{LOOPBACK}:{args.port}; Ctrl-C stops it",
          flush=True)
    optuna_dashboard.run_server(url, host=LOOPBACK, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
