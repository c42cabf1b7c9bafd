"""Settings (keywords > LOCKGATE_* > lockgate.toml > defaults) and opening a workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import lockgate as lg
from lockgate.config import CONFIG_FILE, Settings


def _toml(home: Path, body: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / CONFIG_FILE).write_text(body)


def test_defaults_keep_everything_inside_the_workspace(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path / "ws")
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'ws').resolve() / 'lockgate.db'}"
    assert settings.resolved_artifact_root == str((tmp_path / "ws").resolve() / "artifacts")
    assert settings.key_file == tmp_path / "ws" / "keys" / "audit.key"
    assert settings.actor.startswith("user:")
    assert settings.capture_code is False  # the test environment turns it off


def test_keywords_beat_the_environment_which_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ws"
    _toml(home, '[lockgate]\nidentity = "user:from-file"\nartifact_root = "/srv/file"\ncapture-code = true\n')
    monkeypatch.delenv("LOCKGATE_CAPTURE_CODE")
    settings = Settings.load(home=home)
    assert (settings.identity, settings.artifact_root, settings.capture_code) == ("user:from-file", "/srv/file", True)
    monkeypatch.setenv("LOCKGATE_IDENTITY", "service:from-env")
    assert Settings.load(home=home).identity == "service:from-env"
    assert Settings.load(home=home, identity="cli-user").identity == "user:cli-user"  # a bare name is a user
    monkeypatch.setenv("LOCKGATE_HOME", str(home))
    assert Settings.load().artifact_root == "/srv/file"


def test_relative_paths_in_the_file_mean_next_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ws"
    _toml(home, '[lockgate]\nartifact_root = "blobs"\ndatabase_url = "sqlite:///meta/lockgate.db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = Settings.load(home=home)
    assert settings.resolved_artifact_root == str(home.resolve() / "blobs")
    assert settings.resolved_database_url == f"sqlite:///{home.resolve() / 'meta' / 'lockgate.db'}"
    # From the environment or a keyword they stay as the user typed them.
    assert Settings.load(home=home, artifact_root="rel").resolved_artifact_root == "rel"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('[lockgate]\ncapture_code = "sometimes"\n', "setting 'capture_code' is invalid"),
        ('[lockgate]\ndatabse_url = "sqlite:///x.db"\n', "setting 'databse_url' is invalid"),
        ("[lockgate]\nidentity = 42\n", "setting 'identity' is invalid"),
        ("[lockgate\n", "is not valid TOML"),
        ('lockgate = "yes"\n', "must hold a [lockgate] table"),
    ],
)
def test_invalid_settings_in_lockgate_toml_are_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, fragment: str
) -> None:
    monkeypatch.delenv("LOCKGATE_CAPTURE_CODE")  # else the environment would override the file
    home = tmp_path / "ws"
    _toml(home, body)
    with pytest.raises(lg.ConfigError) as info:
        lg.Workspace.open(home)
    message = str(info.value)
    assert fragment in message
    assert str(home / CONFIG_FILE) in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_an_invalid_environment_variable_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_CAPTURE_CODE", "perhaps")
    with pytest.raises(lg.ConfigError, match="capture_code"):
        Settings.load(home=tmp_path)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("mysql://db.example.com/x", "database 'mysql' is not supported"), ("::not a url::", "is not valid")],
)
def test_unsupported_database_urls_are_a_config_error(tmp_path: Path, url: str, fragment: str) -> None:
    with pytest.raises(lg.ConfigError, match=fragment):
        lg.Workspace.open(tmp_path / "ws", database_url=url)


def test_a_workspace_writes_a_commented_settings_file_once(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    with lg.Workspace.open(home):
        pass
    text = (home / CONFIG_FILE).read_text()
    assert text.startswith("# lockgate workspace settings")
    (home / CONFIG_FILE).write_text('[lockgate]\nidentity = "user:kept"\n')
    with lg.Workspace.open(home) as ws:
        assert ws.settings.actor == "user:kept"
    assert "user:kept" in (home / CONFIG_FILE).read_text()


# -- databases that cannot be used --------------------------------------------------------------


def test_an_unreachable_database_is_unavailable_with_a_clear_sentence(tmp_path: Path) -> None:
    with pytest.raises(lg.UnavailableError) as info:
        lg.Workspace.open(tmp_path / "ws", database_url="postgresql://postgres:s3cret@127.0.0.1:1/x")
    message = str(info.value)
    assert message.startswith("cannot reach the metadata database at postgresql://postgres:***@127.0.0.1:1/x (")
    assert message.endswith("check that it is running and the URL is right")
    assert "s3cret" not in message
    assert "\n" not in message
    assert info.value.exit_code == 3


def test_a_postgres_database_without_the_schema_says_to_run_db_upgrade(tmp_path: Path, pg_url: str) -> None:
    with pytest.raises(lg.SchemaOutdatedError, match=r"has no lockgate schema yet; run: lockgate db upgrade") as info:
        lg.Workspace.open(tmp_path / "ws", database_url=pg_url)
    assert pg_url.rsplit("/", 1)[1] in str(info.value)
    assert isinstance(info.value, lg.UnavailableError)
    # After the upgrade the very same call works, and a second workspace sees the same records.
    with lg.Workspace.open(tmp_path / "ws", database_url=pg_url, upgrade=True) as ws:
        with ws.start_run("shared"):
            pass
    with lg.Workspace.open(tmp_path / "other", database_url=pg_url) as other:
        assert [r.name for r in other.runs.list()] == ["shared"]
        assert other.backends()["metadata"] == "postgresql"


def test_a_sqlite_workspace_is_migrated_on_open(tmp_path: Path) -> None:
    with lg.Workspace.open(tmp_path / "ws") as ws:
        assert ws.backends()["metadata"] == "sqlite"
        assert os.path.exists(tmp_path / "ws" / "lockgate.db")


def test_settings_sent_to_workers_carry_no_password_and_workers_complete_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lockgate.config import strip_password, with_local_secrets

    url = "postgresql://app:hunter2@db.internal:5432/ml?sslmode=require"
    shipped = Settings.load(home=tmp_path, database_url=url).model_copy(update={"database_url": strip_password(url)})
    assert "hunter2" not in shipped.model_dump_json()
    assert strip_password("sqlite:////abs/lockgate.db") == "sqlite:////abs/lockgate.db"  # no password: untouched
    monkeypatch.setenv("LOCKGATE_DATABASE_URL", url)  # the worker's own environment knows it
    assert with_local_secrets(shipped).database_url == url
    monkeypatch.setenv("LOCKGATE_DATABASE_URL", "postgresql://app:other@elsewhere/ml")  # another database
    assert with_local_secrets(shipped).database_url == strip_password(url)


def test_async_job_settings_from_the_environment_and_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "ws"
    defaults = Settings.load(home=home)
    assert (defaults.job_workers, defaults.job_result_ttl, defaults.job_lease) == (4, 86400.0, 30.0)
    assert defaults.resolved_jobs_url == f"sqlite:///{home.resolve() / 'jobs.db'}"
    assert (defaults.callback_allowlist, defaults.callback_secret) == ((), None)
    _toml(
        home,
        '[lockgate]\njobs_url = "sqlite:///queue/jobs.db"\njob-result-ttl = "7d"\ncallback_allowlist = ["hooks.example.com"]\n',
    )
    from_file = Settings.load(home=home)
    assert from_file.resolved_jobs_url == f"sqlite:///{home.resolve() / 'queue' / 'jobs.db'}"  # next to the file
    assert (from_file.job_result_ttl, from_file.callback_allowlist) == (7 * 86400.0, ("hooks.example.com",))
    monkeypatch.setenv("LOCKGATE_CALLBACK_ALLOWLIST", "a.example.com, *.b.example.com,127.0.0.1:9000")
    monkeypatch.setenv("LOCKGATE_JOB_RESULT_TTL", "90m")
    monkeypatch.setenv("LOCKGATE_JOBS_URL", "redis://127.0.0.1:6379/2")
    from_env = Settings.load(home=home)
    assert from_env.callback_allowlist == ("a.example.com", "*.b.example.com", "127.0.0.1:9000")
    assert (from_env.job_result_ttl, from_env.resolved_jobs_url) == (5400.0, "redis://127.0.0.1:6379/2")
    monkeypatch.setenv("LOCKGATE_CALLBACK_ALLOWLIST", '["json.example.com"]')
    assert Settings.load(home=home).callback_allowlist == ("json.example.com",)


def test_the_callback_secret_is_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCKGATE_CALLBACK_SECRET", "hunter2-hunter2-hunter2")
    settings = Settings.load(home=tmp_path)
    assert settings.callback_secret is not None
    assert settings.callback_secret.get_secret_value() == "hunter2-hunter2-hunter2"
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
    assert "hunter2" not in settings.model_dump_json()


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("LOCKGATE_JOB_RESULT_TTL", "soon", "setting 'job_result_ttl' is invalid"),
        ("LOCKGATE_JOB_WORKERS", "-1", "setting 'job_workers' is invalid"),
        ("LOCKGATE_JOB_LEASE", "0", "setting 'job_lease' is invalid"),
    ],
)
def test_invalid_job_settings_are_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(lg.ConfigError, match=fragment):
        Settings.load(home=tmp_path)
