"""A study's home on object storage (`studies.storage.study_home`), against an S3-compatible server on 127.0.0.1
that checks credentials; and the one-line errors of a bad home or Optuna storage, before any trial."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from studies import frontier
from studies.storage.study_home import StudyHome, join, working_copy
from tests.services import S3Server
from vlpet.errors import ConfigError


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    saved = {k: os.environ.get(k) for k in server.env}
    os.environ.update(server.env)  # pyarrow reads the standard AWS variables, as on a cluster node
    yield server
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    server.stop()


def test_a_home_gets_changed_files_whole_and_a_fresh_copy_fetches_them(s3, tmp_path):
    uri = f"s3://{s3.bucket}/studies"
    home = StudyHome.locate(uri, "t", resume=False, study_dir=tmp_path / "a")
    assert home.uri == f"{uri}/t" and home.tune_storage == f"{uri}/t/ray"
    (home.local / "logs").mkdir(parents=True)
    (home.local / "study.json").write_text('{"study": {}}')
    (home.local / "logs" / "trial_1.log").write_text("epoch 1\n")
    (home.local / "ray").mkdir()
    (home.local / "ray" / "state.json").write_text("Tune writes its own")  # never uploaded by the study
    with sqlite3.connect(home.local / "optuna.db") as db:
        db.execute("create table t (x int)")
        db.execute("insert into t values (1)")
    assert home.sync() == ["logs/trial_1.log", "optuna.db", "study.json"]
    assert home.sync() == []  # nothing changed
    time.sleep(0.01)
    (home.local / "logs" / "trial_1.log").write_text("epoch 1\nepoch 2\n")
    assert home.sync() == ["logs/trial_1.log"]
    assert s3.keys("studies/t/") == ["studies/t/logs/trial_1.log", "studies/t/optuna.db", "studies/t/study.json"]

    with pytest.raises(ConfigError, match="already holds a study; pass --resume"):
        StudyHome.locate(uri, "t", resume=False, study_dir=tmp_path / "b")
    # resumed elsewhere from the home alone: by the study's own URI, or by the storage path and its name
    for given in (f"{uri}/t", uri):
        fresh = StudyHome.locate(given, "t", resume=True, study_dir=tmp_path / given[-1])
        assert fresh.uri == f"{uri}/t"
        assert fresh.fetch() == ["logs/trial_1.log", "optuna.db", "study.json"]
        assert (fresh.local / "logs" / "trial_1.log").read_text() == "epoch 1\nepoch 2\n"
        with sqlite3.connect(fresh.local / "optuna.db") as db:
            assert db.execute("select x from t").fetchall() == [(1,)]
        assert fresh.fetch() == []  # the copy is as new as the home
    # a working copy written after its last upload (the driver killed in between) keeps its newer file
    (home.local / "study.json").write_text('{"newer": 1}')
    assert "study.json" not in home.fetch() and (home.local / "study.json").read_text() == '{"newer": 1}'
    with pytest.raises(ConfigError, match="holds no study"):
        StudyHome.locate(uri, "other", resume=True, study_dir=tmp_path / "c")


def test_a_failed_upload_is_said_and_retried_at_the_next_sync(s3, tmp_path, capsys):
    home = StudyHome("s3://vlpet-later-bucket/studies/u", tmp_path)
    (tmp_path / "results.parquet").write_bytes(b"rows")
    assert home.sync() == []  # the bucket is not there (yet)
    assert "warning: not uploaded to s3://vlpet-later-bucket/studies/u, retried at the next sync: results.parquet " \
           "(the bucket does not exist" in capsys.readouterr().err
    s3.client().create_bucket(Bucket="vlpet-later-bucket")
    assert home.sync() == ["results.parquet"]
    assert s3.client().get_object(Bucket="vlpet-later-bucket", Key="studies/u/results.parquet")["Body"].read() == b"rows"


def test_uri_parameters_and_the_default_working_copy(monkeypatch, tmp_path):
    assert join("s3://b/p?endpoint_override=h:1", "t", "ray") == "s3://b/p/t/ray?endpoint_override=h:1"
    monkeypatch.setenv("VLPET_STUDY_CACHE", str(tmp_path))
    copy = working_copy("s3://b/studies/t?region=x")
    assert copy.parent == tmp_path and copy.name.startswith("t-")
    assert copy == working_copy("s3://b/studies/t")  # the same study, whatever its URI's parameters
    assert working_copy("s3://other/studies/t") != copy


def _frontier_error(capsys, *flags: str) -> str:
    assert frontier.main(["--no-report", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    return err


def test_a_bad_home_fails_in_one_line_before_any_trial(s3, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("VLPET_STUDY_CACHE", str(tmp_path))
    err = _frontier_error(capsys, "--storage-path", "s3://no-such-vlpet-bucket/studies")
    assert "--storage-path s3://no-such-vlpet-bucket/studies/embedded: the bucket does not exist" in err
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert "wrong secret key" in _frontier_error(capsys, "--storage-path", f"s3://{s3.bucket}/studies")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN")
    assert "unknown access key" in _frontier_error(capsys, "--storage-path", f"s3://{s3.bucket}/studies")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert "no AWS credentials found" in _frontier_error(capsys, "--storage-path", f"s3://{s3.bucket}/studies")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
    closed = f"s3://{s3.bucket}/studies?endpoint_override=http://127.0.0.1:9"
    assert "the endpoint is unreachable" in _frontier_error(capsys, "--storage-path", closed)
    assert not list(tmp_path.iterdir())  # no study was started
    import ray

    assert not ray.is_initialized()


def test_an_unreachable_optuna_database_fails_in_one_line_before_any_trial(capsys, tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text("study:\n  optuna_storage: postgresql+psycopg2://vlpet@127.0.0.1:9/vlpet\n")
    err = _frontier_error(capsys, "--config", str(config), "--study-dir", str(tmp_path / "s"))
    assert err.startswith("error: study.optuna_storage=postgresql+psycopg2://vlpet@127.0.0.1:9/vlpet: cannot "
                          "open it (connection to server at \"127.0.0.1\", port 9 failed: Connection refused"), err


@pytest.mark.parametrize("url", ["postgresql+psycopg2://vlpet:S3cr3t@127.0.0.1:9/vlpet",
                                 "postgresql://vlpet:p@S3cr3t@db/v", "postgresql://vlpet@db/v?password=S3cr3t"])
def test_a_password_in_the_optuna_url_is_refused_unprinted_before_anything_is_written(capsys, tmp_path, url):
    """study.json keeps the study's config for --resume: a password in the URL would be saved there."""
    config = tmp_path / "study.yaml"
    config.write_text(f"study:\n  optuna_storage: '{url}'\n")
    err = _frontier_error(capsys, "--config", str(config), "--study-dir", str(tmp_path / "s"))
    assert "holds a password, which would be saved in study.json" in err and "PGPASSWORD" in err, err
    assert "S3cr3t" not in err and not (tmp_path / "s").exists()


def test_a_home_on_a_shared_directory_is_written_by_rename(tmp_path):
    """`--storage-path /mnt/shared` (a PVC, NFS): the same home layout, each file renamed into place."""
    home = StudyHome.locate(str(tmp_path / "shared"), "t", resume=False, study_dir=tmp_path / "copy")
    (home.local).mkdir()
    (home.local / "results.parquet").write_bytes(b"rows")
    assert home.sync() == ["results.parquet"]
    assert (tmp_path / "shared" / "t" / "results.parquet").read_bytes() == b"rows"
    assert not list((tmp_path / "shared" / "t").glob("*.tmp"))
    (home.local / "study.json").write_text("{}")
    home.sync()
    fresh = StudyHome.locate(str(tmp_path / "shared" / "t"), "t", resume=True, study_dir=tmp_path / "fresh")
    assert fresh.fetch() == ["results.parquet", "study.json"]


def checksums(directory) -> dict:
    import hashlib

    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_mistyped_study_dir_naming_another_study_is_refused_before_anything_is_fetched(tmp_path, capsys):
    """`--resume --storage-path <home of A> --study-dir <B's directory>`, and `vlpet-report <home of A>
    --study-dir <B>`: refused, and every file of B byte-identical."""
    from studies.report_command import main as report_main

    home_dir = tmp_path / "home" / "a"
    home_dir.mkdir(parents=True)
    (home_dir / "study.json").write_text('{"study": {"name": "a"}, "search": {}, "run": {}, "study_id": "aaa"}')
    (home_dir / "results.csv").write_text("trial_id\nfrom-a\n")
    other = tmp_path / "b"
    other.mkdir()
    (other / "study.json").write_text('{"study": {"name": "b"}, "search": {}, "run": {}, "study_id": "bbb"}')
    (other / "results.csv").write_text("trial_id\nfinished-b\n")
    before = checksums(other)
    with pytest.raises(ConfigError, match=r"--study-dir .*/b holds another study \(id bbb\), not a working copy of .*"
                                          r"\(id aaa\); nothing was fetched into it"):
        StudyHome.locate(str(tmp_path / "home"), "a", resume=True, study_dir=other).fetch()
    assert report_main([f"file://{home_dir}", "--study-dir", str(other)]) == 2
    assert "holds another study (id bbb)" in capsys.readouterr().err
    assert checksums(other) == before
    stray = tmp_path / "stray"  # not empty, no study.json: not a working copy either
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty and holds no study.json"):
        StudyHome.locate(str(tmp_path / "home"), "a", resume=True, study_dir=stray).fetch()
    assert (stray / "notes.txt").read_text() == "mine" and len(list(stray.iterdir())) == 1


def test_a_storage_service_that_never_answers_fails_within_the_probe_timeout(tmp_path, monkeypatch):
    """gs:// with no credentials and no network: Google's SDK waits minutes; the probe gives up in time."""
    home = StudyHome(str(tmp_path / "home" / "a"), tmp_path / "copy")
    monkeypatch.setattr(StudyHome, "_probe", lambda self: time.sleep(30))
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"no answer within 0 s \(no credentials or no route"):
        home.check_writable(timeout_s=0.3)
    assert time.monotonic() - start < 5
