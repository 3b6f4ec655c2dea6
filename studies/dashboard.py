"""A study's Optuna searches (one per variant: trials, Pareto front, parameter importances) in optuna-dashboard,
served on 127.0.0.1 only.

    vlpet-dashboard runs/studies/embedded                 # then open http://127.0.0.1:8080
    ssh -L 8080:127.0.0.1:8080 HEAD                       # from your laptop, for a study on a cluster's head

Reads the study's Optuna storage: study.optuna_storage of its study.json (PostgreSQL on clusters), else
<study_dir>/optuna.db. Needs the `dashboard` extra: pip install -e ".[dashboard]".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from studies.ray_cluster import LOOPBACK
from vlpet.errors import ConfigError, entry_point, redact


def study_storage_url(study_dir: Path) -> str:
    """The Optuna storage URL of the study in `study_dir`."""
    record = study_dir / "study.json"
    url = None
    if record.is_file():
        try:
            url = (json.loads(record.read_text()).get("study") or {}).get("optuna_storage")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
            raise ConfigError(f"{record} is not a readable study description ({err})") from None
    if url:
        return url
    db = study_dir / "optuna.db"
    if not db.is_file():
        raise ConfigError(f"{study_dir} holds no Optuna storage (no {db.name}, no study.optuna_storage in study.json); "
                          "give the directory of a study that has run (runs/studies/<name>)")
    return f"sqlite:///{db.resolve()}"


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Serve the dashboard until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study_dir", type=Path, help="the study's directory (runs/studies/<name>)")
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    args = parser.parse_args(argv)
    url = study_storage_url(args.study_dir)
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError('optuna-dashboard is not installed: pip install -e ".[dashboard]"') from None
    print(f"optuna-dashboard of {args.study_dir} ({redact(url)}) on http://{LOOPBACK}:{args.port}; Ctrl-C stops it",
          flush=True)
    optuna_dashboard.run_server(url, host=LOOPBACK, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
