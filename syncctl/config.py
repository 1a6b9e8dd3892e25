"""Settings resolved once at start-up: flags > environment > config file > defaults."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

DAY = 86400
HOUR = 3600


class Env:
    """Every environment variable syncctl reads."""

    DB = "SYNCCTL_DB"
    GOOGLE_ENDPOINT = "SYNCCTL_GOOGLE_ENDPOINT"
    WEBHOOK_URL = "SYNCCTL_WEBHOOK_URL"
    CONFIG = "SYNCCTL_CONFIG"
    SECRET_KEY = "SYNCCTL_SECRET_KEY"


class ConfigError(ValueError):
    """The configuration (file, environment or flag) is not usable."""


@dataclass(frozen=True)
class Settings:
    """Every tunable number of SPEC section 3, with the contract's defaults."""

    db_path: Path = Path("syncctl.db")
    google_endpoint: str | None = None
    webhook_url: str | None = None

    contacts_interval_seconds: int = 3 * DAY
    calendar_interval_seconds: int = 4 * HOUR
    no_change_threshold: int = 5
    backoff_multiplier: int = 2
    interval_cap_multiplier: int = 2
    people_sync_token_lifetime_seconds: int = 7 * DAY
    webhook_safety_interval_seconds: int = 24 * HOUR
    webhook_renew_before_seconds: int = 24 * HOUR

    token_refresh_margin_seconds: int = 300
    breaker_failure_threshold: int = 3
    breaker_open_seconds: int = HOUR
    quota_defer_seconds: int = 15 * 60

    retry_max_attempts: int = 5
    retry_initial_wait_seconds: float = 1.0
    retry_max_wait_seconds: float = 32.0
    http_timeout_seconds: float = 30.0
    concurrency: int = 8

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given values changed (None leaves a value as it is), validated: where
        command-line flags meet the resolved configuration."""
        updated = replace(self, **{k: v for k, v in changes.items() if v is not None})
        _validate(updated)
        return updated

    def interval_for(self, integration: str) -> int:
        """Default sync interval of an integration type."""
        if integration == "google_contacts":
            return self.contacts_interval_seconds
        return self.calendar_interval_seconds


TUNABLES = {f.name for f in fields(Settings)} - {"db_path", "google_endpoint", "webhook_url"}


def default_db_path(env: Mapping[str, str]) -> Path:
    """`$XDG_DATA_HOME/syncctl/syncctl.db`, falling back to `~/.local/share`."""
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "syncctl" / "syncctl.db"


def default_config_path(env: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/syncctl/config.toml`, falling back to `~/.config`."""
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "syncctl" / "config.toml"


def load_settings(
    *, db: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Resolve settings from a `--db` flag, the environment, the TOML config file and defaults."""
    env = os.environ if env is None else env
    explicit_config = env.get(Env.CONFIG)
    config_path = Path(explicit_config) if explicit_config else default_config_path(env)
    values: dict[str, Any] = {}
    if explicit_config or config_path.exists():
        values.update(_read_config_file(config_path))
    file_db = values.pop("db", None)
    db_text = env.get(Env.DB) or file_db
    values["db_path"] = db or (Path(db_text) if db_text else default_db_path(env))
    values["google_endpoint"] = env.get(Env.GOOGLE_ENDPOINT) or values.get("google_endpoint")
    values["webhook_url"] = env.get(Env.WEBHOOK_URL) or values.get("webhook_url")
    values.update(overrides)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} is not readable TOML: {exc}") from exc
    allowed = TUNABLES | {"db", "google_endpoint", "webhook_url"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {unknown[0]!r}")
    return dict(data)


def _validate(settings: Settings) -> None:
    for name in sorted(TUNABLES):
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"setting {name} must be a positive number, got {value!r}")
    if settings.google_endpoint and not settings.google_endpoint.startswith(
        ("http://", "https://")
    ):
        raise ConfigError(f"{Env.GOOGLE_ENDPOINT} must start with http:// or https://")
