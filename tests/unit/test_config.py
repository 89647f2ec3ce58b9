"""Settings from the environment: defaults, conversions, and errors that name the variable."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gpuq.config import ConfigError, Settings, normalise_database_url


def test_defaults_are_the_specified_limits_and_embedded_mode():
    settings = Settings.from_env({})
    assert settings.submit_limit == "10 per hour"
    assert settings.daily_limit == "200 per day"
    assert settings.embedded
    assert settings.sqlalchemy_url.startswith("sqlite:///") and settings.sqlalchemy_url.endswith(
        "instance/gpuq.sqlite3"
    )


def test_environment_values_are_converted():
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u:p@db:5432/gpuq",
            "REDIS_URL": "redis://cache:6379/0",
            "GPUQ_TRUSTED_PROXIES": "1",
            "GPUQ_AUTO_MIGRATE": "0",
            "GPUQ_TIME_WORST_SECONDS": "120",
            "GPUQ_SUBMIT_LIMIT": "5 per minute",
        }
    )
    assert settings.sqlalchemy_url == "postgresql+psycopg://u:p@db:5432/gpuq"
    assert not settings.embedded
    assert settings.trusted_proxies == 1
    assert settings.auto_migrate is False
    assert settings.time_worst_seconds == Decimal(120)
    assert settings.submit_limit == "5 per minute"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GPUQ_SUBMIT_LIMIT", "ten an hour"),
        ("GPUQ_DAILY_LIMIT", "200"),
        ("GPUQ_TRUSTED_PROXIES", "two"),
        ("GPUQ_TRUSTED_PROXIES", "-1"),
        ("GPUQ_AUTO_MIGRATE", "maybe"),
        ("GPUQ_TIME_WORST_SECONDS", "NaN"),
        ("GPUQ_REDIS_TIMEOUT", "inf"),
    ],
)
def test_bad_values_raise_config_error_naming_the_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_postgres_urls_use_psycopg_3():
    assert normalise_database_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert normalise_database_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    assert normalise_database_url("sqlite:///x") == "sqlite:///x"
