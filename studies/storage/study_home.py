"""Where a study lives when `--storage-path` is given: its home, `<storage-path>/<study name>`, on object
storage (s3://, gs://) or a shared filesystem, so that a study survives the loss of the head node.

The home holds everything a study needs to resume on a fresh head: Tune's experiment state and the
trials' checkpoints (`ray/`, written there by Tune and Train), and the study's own files (study.json,
the results table, the Optuna SQLite file, the logs, the report). The driver works on a local copy of
the study's files (`working_copy`), because SQLite and the results table are rewritten in place, and
uploads each file after it changes (`HomeSync`, a Tune callback); a trial uploads its own log when it
ends (it may run on another node). Each upload is one object written whole, so the home never holds
half a file.

Credentials and endpoints come from the standard environment (AWS_ACCESS_KEY_ID, AWS_PROFILE,
AWS_ENDPOINT_URL, an instance role; GOOGLE_APPLICATION_CREDENTIALS) or the URI's parameters
(`s3://bucket/path?endpoint_override=host:port&region=...`), read by pyarrow's filesystems as by Ray's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray import tune

from analysis.study_layout import STUDY_JSON
from vlpet.errors import ConfigError

TUNE_DIR = "ray"  # the home's folder of Tune's experiments and Train's checkpoints
NOT_SYNCED = (TUNE_DIR,)  # written to the home by Tune and Train themselves
CACHE = Path("~/.cache/vlpet-studies")  # working copies; $VLPET_STUDY_CACHE overrides
# S3 keeps an object's time in whole seconds: a home's file counts as newer than the copy's beyond this
FETCH_SLACK_NS = 2 * 10**9
PROBE_TIMEOUT_S = 30.0  # the longest a storage probe may take before the home is called unreachable

# pyarrow's S3 errors carry the AWS error code; each code, said in one line with its fix
_S3_ERRORS = {
    "NO_SUCH_BUCKET": "the bucket does not exist; create it or fix the bucket name",
    "INVALID_ACCESS_KEY_ID": "the credentials were refused (unknown access key); fix AWS_ACCESS_KEY_ID / AWS_PROFILE",
    "SIGNATURE_DOES_NOT_MATCH": "the credentials were refused (wrong secret key); fix AWS_SECRET_ACCESS_KEY",
    "ACCESS_DENIED": "access denied; the credentials in use may not write to this bucket",
    "NETWORK_CONNECTION": "the endpoint is unreachable; check AWS_ENDPOINT_URL / endpoint_override and the network",
}
NO_AWS_CREDENTIALS = ("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
                      "or run on a node with a role for the bucket")
# where the AWS SDK finds credentials without asking the network (the instance metadata service)
_AWS_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


def join(uri: str, *parts: str) -> str:
    """`uri` with path parts appended before its query (`s3://b/p?endpoint_override=...`)."""
    base, sep, query = uri.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + sep + query


def _without_query(uri: str) -> str:
    return uri.partition("?")[0]


def _aws_credentials_in_environment() -> bool:
    files = [Path(os.environ.get(var) or default).expanduser() for var, default in
             (("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"), ("AWS_CONFIG_FILE", "~/.aws/config"))]
    return any(os.environ.get(v) for v in _AWS_CREDENTIAL_VARS) or any(f.is_file() for f in files)


def _instance_role_possible() -> bool:
    return os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true"


def _reason(err: Exception) -> str:
    """A storage error in one line: the AWS code's meaning where known, else the error's first line. With
    no credentials in the environment, a failure to sign or to reach the metadata service means none."""
    text = str(err)
    code = re.search(r"AWS Error (\w+)", text)
    env_credentials = _aws_credentials_in_environment()
    if code and code.group(1) == "INTERNAL_FAILURE" and not env_credentials:  # nothing to sign with
        return NO_AWS_CREDENTIALS
    if code and code.group(1) in _S3_ERRORS:
        unreachable = code.group(1) == "NETWORK_CONNECTION" and not env_credentials
        return _S3_ERRORS[code.group(1)] + (" (or, with no credentials in the environment, the instance metadata "
                                            "service that gives a node's role)" if unreachable else "")
    return text.strip().splitlines()[0][:300] if text.strip() else type(err).__name__


def check_credentials(uri: str) -> None:
    """An s3:// location with no credentials anywhere the AWS SDK would look fails at once (the SDK would
    spend seconds on retries and say only INTERNAL_FAILURE)."""
    if uri.startswith("s3://") and not _aws_credentials_in_environment() and not _instance_role_possible():
        raise ConfigError(f"--storage-path {_without_query(uri)}: {NO_AWS_CREDENTIALS}")


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem of a URI and the path in it; a scheme it cannot open is a ConfigError."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ConfigError(f"--storage-path {_without_query(uri)}: cannot open it ({_reason(err)}); use s3://BUCKET/"
                          f"PATH, gs://BUCKET/PATH or a shared directory") from None


def upload(local: Path, uri: str) -> None:
    """Write the local file `local` to `uri` whole: one object on object storage, a rename on a filesystem."""
    fs, path = filesystem(uri)
    on_disk = isinstance(fs, pafs.LocalFileSystem)
    if on_disk:  # object storage has no directories (pyarrow would write marker objects)
        fs.create_dir(path.rpartition("/")[0], recursive=True)
    target = f"{path}.{uuid.uuid4().hex}.tmp" if on_disk else path
    with open(local, "rb") as src, fs.open_output_stream(target) as dst:
        while chunk := src.read(2**22):
            dst.write(chunk)
    if target != path:
        fs.move(target, path)


def sqlite_snapshot(db: Path, into: Path) -> None:
    """A consistent copy of a SQLite file that may be written meanwhile (SQLite's backup API)."""
    with sqlite3.connect(db) as src, sqlite3.connect(into) as dst:
        src.backup(dst)


def working_copy(home_uri: str, purpose: str = "") -> Path:
    """The default local copy of the study homed at `home_uri` (`<name>-<hash>[-purpose]` in the cache): the
    same path on every head of the same image and user (Tune's saved state refers to it), whatever the
    driver's working directory (a Ray job's changes with every submission)."""
    cache = Path(os.environ.get("VLPET_STUDY_CACHE") or CACHE).expanduser()
    plain = _without_query(home_uri).rstrip("/")
    digest = hashlib.sha1(plain.encode()).hexdigest()[:8]
    return (cache / "-".join(filter(None, [plain.rpartition("/")[2], digest, purpose]))).resolve()


class StudyHome:
    """The home of one study (`uri`) and its local working copy (`local`)."""

    def __init__(self, uri: str, local: Path):
        self.uri, self.local = join(uri), Path(local)  # join: no trailing slash
        self._sent: dict[str, tuple[int, int]] = {}  # relative path -> (mtime_ns, size) last uploaded

    @classmethod
    def locate(cls, storage_path: str, name: str, resume: bool, study_dir: Path | None) -> StudyHome:
        """The home of study `name` under `storage_path` (resumed: `storage_path` itself when it holds a
        study, as `--resume --storage-path s3://.../<study>`), checked writable; a new study's home must
        hold none yet."""
        check_credentials(storage_path)
        own = join(storage_path, name)
        if resume and not cls._holds_study(own) and cls._holds_study(storage_path):
            own = storage_path
        home = cls(own, (study_dir or working_copy(own)).resolve())
        home.check_writable()
        if resume and not home.holds_study():
            raise ConfigError(f"--resume: {_without_query(own)} holds no study (no {STUDY_JSON}); give the study's "
                              f"own location (<storage-path>/<name>) or run without --resume to start it")
        if not resume and home.holds_study():
            raise ConfigError(f"{_without_query(own)} already holds a study; pass --resume to continue it or choose "
                              f"another --name")
        return home

    @property
    def tune_storage(self) -> str:
        """Where Tune keeps the study's experiments and Train its checkpoints."""
        return join(self.uri, TUNE_DIR)

    def _uri_of(self, relative: str) -> str:
        return join(self.uri, relative)

    @staticmethod
    def _holds_study(uri: str) -> bool:
        fs, path = filesystem(join(uri, STUDY_JSON))
        try:
            return fs.get_file_info(path).type == pafs.FileType.File
        except OSError as err:
            raise ConfigError(f"--storage-path {_without_query(uri)}: {_reason(err)}") from None

    def holds_study(self) -> bool:
        return self._holds_study(self.uri)

    def check_writable(self, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        """Write and delete a probe object: a bad bucket, refused or missing credentials or an unreachable
        endpoint fail here, in one line, before any trial. The probe runs in a daemon thread bounded by
        `timeout_s`: with no credentials and no network, Google's SDK waits minutes on its metadata server."""
        check_credentials(self.uri)
        outcome: list[BaseException | None] = []
        probe = threading.Thread(target=lambda: outcome.append(self._probe()), daemon=True)
        probe.start()
        probe.join(timeout_s)
        if not outcome:
            raise ConfigError(f"--storage-path {_without_query(self.uri)}: no answer within {timeout_s:.0f} s (no "
                              "credentials or no route to the storage service: check the network and the "
                              "credentials, e.g. GOOGLE_APPLICATION_CREDENTIALS for gs://)")
        if outcome[0] is not None:
            raise outcome[0]

    def _probe(self) -> ConfigError | None:
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe"
            probe.write_text("ok")
            try:
                upload(probe, self._uri_of(".write-test"))
                fs, path = filesystem(self._uri_of(".write-test"))
                fs.delete_file(path)
            except ConfigError as err:
                return err
            except OSError as err:
                return ConfigError(f"--storage-path {_without_query(self.uri)}: {_reason(err)}")
        return None

    def check_working_copy(self) -> None:
        """The working copy must be this study's (or new, or empty) before anything is fetched into it: a
        mistyped --study-dir naming another study would otherwise have its files overwritten."""
        own = self.local / STUDY_JSON
        if not self.local.exists() or not any(self.local.iterdir()):
            return
        fs, path = filesystem(self._uri_of(STUDY_JSON))
        try:
            with fs.open_input_stream(path) as src:
                home_id = json.loads(src.read()).get("study_id")
            local_id = json.loads(own.read_text()).get("study_id") if own.is_file() else None
        except (OSError, ValueError, AttributeError) as err:
            raise ConfigError(f"--storage-path {_without_query(self.uri)}: cannot compare its {STUDY_JSON} with "
                              f"{own} ({err}); give an empty --study-dir") from None
        if not own.is_file() or local_id != home_id:
            what = f"holds another study (id {local_id})" if own.is_file() else f"is not empty and holds no {STUDY_JSON}"
            raise ConfigError(f"--study-dir {self.local} {what}, not a working copy of {_without_query(self.uri)} "
                              f"(id {home_id}); nothing was fetched into it: give an empty directory, this study's "
                              "own working copy, or leave --study-dir out")

    def fetch(self) -> list[str]:
        """Copy the study's files (all but Tune's state) from the home into the working copy where the
        home's are newer or the copy lacks them; returns the files fetched. A working copy written after
        its last upload (a driver killed in between) keeps its newer files; a directory that is not this
        study's working copy is refused first (`check_working_copy`)."""
        self.check_working_copy()
        fs, root = filesystem(self.uri)
        fetched = []
        for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
            relative = info.path[len(root):].lstrip("/")
            if info.type != pafs.FileType.File or relative.split("/")[0] in NOT_SYNCED:
                continue
            target = self.local / relative
            if target.is_file() and target.stat().st_mtime_ns + FETCH_SLACK_NS >= info.mtime_ns:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as src, open(target, "wb") as dst:
                dst.write(src.read())
            fetched.append(relative)
        return sorted(fetched)

    def sync(self, under: str = "") -> list[str]:
        """Upload every file of the working copy (or of its folder `under`) that changed since its last
        upload (the Optuna SQLite file as a consistent snapshot); returns the files uploaded. A failed
        upload is said on stderr and retried at the next sync: a storage hiccup does not stop the study."""
        sent, failed = [], []
        files = (self.local / under).rglob("*")
        for path in sorted(p for p in files if p.is_file() and not p.name.endswith(".tmp")):
            relative = path.relative_to(self.local).as_posix()
            stat = path.stat()
            if relative.split("/")[0] in NOT_SYNCED or self._sent.get(relative) == (stat.st_mtime_ns, stat.st_size):
                continue
            try:
                self._upload(path, relative)
            except OSError as err:
                failed.append(f"{relative} ({_reason(err)})")
                continue
            self._sent[relative] = (stat.st_mtime_ns, stat.st_size)
            sent.append(relative)
        if failed:
            print(f"warning: not uploaded to {_without_query(self.uri)}, retried at the next sync: {'; '.join(failed)}",
                  file=sys.stderr)
        return sent

    def _upload(self, path: Path, relative: str) -> None:
        if path.suffix != ".db":
            upload(path, self._uri_of(relative))
            return
        with tempfile.TemporaryDirectory() as tmp:
            snapshot = Path(tmp) / path.name
            sqlite_snapshot(path, snapshot)
            upload(snapshot, self._uri_of(relative))


class HomeSync(tune.Callback):
    """Uploads the study's changed files after every trial event (after the results table's callback,
    which writes them) and at the end of each experiment."""

    def __init__(self, home: StudyHome):
        self.home = home

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.home.sync()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.home.sync()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.home.sync()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.home.sync()
