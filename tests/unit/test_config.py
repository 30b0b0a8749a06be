"""Settings: environment variables, .env files, and the production start-up check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from logkeep.config import MIN_PROD_SECRET_LENGTH, Settings, SettingsError

GOOD: dict[str, Any] = {
    "secret_key": "k3y-0f-adequate-length",
    "admin_password": "correct horse battery",
    "database_url": "postgresql://logkeep:pw@db.internal:5432/logkeep",
    "redis_url": "redis://cache.internal:6379/0",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No LOGKEEP_* variable or .env file of the machine leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("LOGKEEP_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def prod(**overrides: Any) -> Settings:
    return Settings(_env_file=None, env="prod", **{**GOOD, **overrides})


def startup_error(settings: Settings) -> str:
    with pytest.raises(SettingsError) as info:
        settings.check_for_startup()
    return str(info.value)


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_defaults() -> None:
    s = Settings(_env_file=None)
    assert s.env == "dev"
    assert s.database_url is None
    assert s.redis_url is None
    assert s.redis_key_prefix == "logkeep:"
    assert s.secret_key.get_secret_value() == ""


def test_prod_with_good_values_passes() -> None:
    prod().check_for_startup()


@pytest.mark.parametrize("env", ["dev", "test"])
def test_dev_and_test_pass_with_nothing_set(env: str) -> None:
    Settings(_env_file=None, env=env).check_for_startup()


@pytest.mark.parametrize("field", ["secret_key", "admin_password"])
@pytest.mark.parametrize(
    "value", ["", "   ", "changeme", "CHANGEME", " ChangeMe ", "password", "admin", "secret"]
)
def test_prod_refuses_empty_or_placeholder_secrets(field: str, value: str) -> None:
    message = startup_error(prod(**{field: value}))
    env_name = f"LOGKEEP_{field.upper()}"
    assert f"{env_name} is empty or a placeholder" in message
    other = {"secret_key": "LOGKEEP_ADMIN_PASSWORD", "admin_password": "LOGKEEP_SECRET_KEY"}
    assert other[field] not in message


@pytest.mark.parametrize("field", ["secret_key", "admin_password"])
def test_prod_refuses_short_secrets_without_echoing_them(field: str) -> None:
    value = "Zq7-short"
    assert len(value) < MIN_PROD_SECRET_LENGTH
    message = startup_error(prod(**{field: value}))
    assert f"LOGKEEP_{field.upper()} is shorter than {MIN_PROD_SECRET_LENGTH}" in message
    assert value not in message


def test_prod_accepts_a_secret_of_exactly_the_minimum_length() -> None:
    prod(secret_key="x" * MIN_PROD_SECRET_LENGTH).check_for_startup()
    message = startup_error(prod(secret_key="x" * (MIN_PROD_SECRET_LENGTH - 1)))
    assert "LOGKEEP_SECRET_KEY" in message


@pytest.mark.parametrize("field", ["database_url", "redis_url"])
@pytest.mark.parametrize("value", [None, ""])
def test_prod_requires_store_urls(field: str, value: str | None) -> None:
    message = startup_error(prod(**{field: value}))
    assert f"LOGKEEP_{field.upper()} must be set in prod" in message


def test_prod_reports_every_problem_at_once() -> None:
    message = startup_error(Settings(_env_file=None, env="prod"))
    assert message.startswith("refusing to start with LOGKEEP_ENV=prod")
    for name in (
        "LOGKEEP_SECRET_KEY",
        "LOGKEEP_ADMIN_PASSWORD",
        "LOGKEEP_DATABASE_URL",
        "LOGKEEP_REDIS_URL",
    ):
        assert name in message


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGKEEP_ENV", "prod")
    monkeypatch.setenv("LOGKEEP_SECRET_KEY", GOOD["secret_key"])
    monkeypatch.setenv("LOGKEEP_ADMIN_PASSWORD", GOOD["admin_password"])
    monkeypatch.setenv("LOGKEEP_DATABASE_URL", GOOD["database_url"])
    monkeypatch.setenv("LOGKEEP_REDIS_URL", GOOD["redis_url"])
    monkeypatch.setenv("LOGKEEP_PG_POOL_MAX_SIZE", "20")
    monkeypatch.setenv("LOGKEEP_CACHE_ENABLED", "false")
    monkeypatch.setenv("LOGKEEP_RETENTION_DAYS", "14")
    s = Settings(_env_file=None)
    assert s.env == "prod"
    assert s.secret_key.get_secret_value() == GOOD["secret_key"]
    assert s.database_url == GOOD["database_url"]
    assert s.pg_pool_max_size == 20
    assert s.cache_enabled is False
    assert s.retention_days == 14
    s.check_for_startup()


def test_placeholder_from_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGKEEP_ENV", "prod")
    monkeypatch.setenv("LOGKEEP_SECRET_KEY", "changeme")
    monkeypatch.setenv("LOGKEEP_ADMIN_PASSWORD", GOOD["admin_password"])
    monkeypatch.setenv("LOGKEEP_DATABASE_URL", GOOD["database_url"])
    monkeypatch.setenv("LOGKEEP_REDIS_URL", GOOD["redis_url"])
    message = startup_error(Settings(_env_file=None))
    assert "LOGKEEP_SECRET_KEY" in message
    assert "LOGKEEP_ADMIN_PASSWORD" not in message


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_DAYS", "3")
    assert Settings(_env_file=None).retention_days == 30


def test_env_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("LOGKEEP_RETENTION_DAYS=9\nLOGKEEP_HTTP_PORT=9000\n", encoding="utf-8")
    s = Settings(_env_file=env_file)
    assert s.retention_days == 9
    assert s.http_port == 9000
    monkeypatch.setenv("LOGKEEP_HTTP_PORT", "9100")
    assert Settings(_env_file=env_file).http_port == 9100


def test_invalid_environment_name_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGKEEP_ENV", "staging")
    with pytest.raises(ValidationError, match="env"):
        Settings(_env_file=None)


def test_pool_min_above_max_is_rejected() -> None:
    with pytest.raises(ValidationError, match="LOGKEEP_PG_POOL_MIN_SIZE") as info:
        Settings(_env_file=None, pg_pool_min_size=5, pg_pool_max_size=2)
    assert "5 > 2" in str(info.value)


def test_pool_min_above_max_from_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGKEEP_PG_POOL_MIN_SIZE", "11")
    with pytest.raises(ValidationError, match="LOGKEEP_PG_POOL_MAX_SIZE"):
        Settings(_env_file=None)


def test_pool_min_equal_to_max_is_accepted() -> None:
    s = Settings(_env_file=None, pg_pool_min_size=4, pg_pool_max_size=4)
    assert (s.pg_pool_min_size, s.pg_pool_max_size) == (4, 4)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retention_days", 0),
        ("http_port", 0),
        ("http_port", 70_000),
        ("pg_pool_max_size", 0),
        ("connect_deadline_s", 0),
        ("log_level", "verbose"),
    ],
)
def test_out_of_range_values_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None, **{field: value})


def test_resolved_data_dir_is_absolute(tmp_path: Path) -> None:
    s = Settings(_env_file=None, data_dir=Path("state"))
    assert s.resolved_data_dir.is_absolute()
    assert s.resolved_data_dir == (tmp_path / "state").resolve()


def test_entry_age_beyond_retention_is_refused() -> None:
    with pytest.raises(ValidationError, match="LOGKEEP_MAX_ENTRY_AGE_DAYS must not exceed"):
        Settings(_env_file=None, retention_days=7, max_entry_age_days=10)
    assert Settings(_env_file=None, retention_days=7).entry_max_age_days == 7
