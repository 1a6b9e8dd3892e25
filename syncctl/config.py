"""Settings resolved once at start-up: flags > environment > config file > defaults."""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, get_args, get_type_hints
from urllib.parse import urlsplit

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
    # A scheduled calendar sync lists the calendar list only when its last listing is at least
    # this old (else only the known calendars' events): a new or removed calendar is noticed up
    # to this much later. 0 lists it on every sync, as the naive poller does.
    calendar_list_refresh_seconds: int = 24 * HOUR
    # The safety poll doubles at each poll that found nothing push missed, up to this: the
    # channel TTL, so the weekly renewal sync is the safety poll (README, Push notifications).
    webhook_safety_max_seconds: int = 7 * DAY
    webhook_renew_before_seconds: int = 2 * HOUR
    webhook_coalesce_seconds: float = 2.0
    webhook_dispatch_workers: int = 4
    lease_seconds: int = 30 * 60

    token_refresh_margin_seconds: int = 300
    # A pair due within this share of its interval runs on a token another sync just made
    # fresh, rather than refresh it again on time (policy/fresh_token.py).
    fresh_token_early_fraction: float = 0.25
    breaker_failure_threshold: int = 3
    breaker_open_seconds: int = HOUR
    # Each failed half-open trial doubles the open window up to this; None: the pair's default
    # interval, so a recovery is noticed no later than naive polling would notice it.
    breaker_max_open_seconds: int | None = None
    # A transient failure is retried after this, doubling with each failure in a row (never
    # later than the pair's current interval) until the breaker opens.
    failure_backoff_seconds: int = 5 * 60
    # The fleet breaker per API: at least this many attempts against one API, this share of
    # them failing transiently, within one window (a run-due and the runs just before it).
    fleet_breaker_min_attempts: int = 20
    fleet_breaker_failure_ratio: float = 0.9
    fleet_breaker_window_seconds: int = 15 * 60
    # Once this many attempts of the window failed at that share, the rest are sent as single
    # requests (no retries) until the breaker trips or an attempt succeeds.
    fleet_breaker_single_after: int = 3
    # An open fleet breaker is probed this long after it opened, then after as long as it has
    # been open (doubling), at most fleet_breaker_max_probe_seconds apart.
    fleet_breaker_probe_seconds: int = 5 * 60
    fleet_breaker_max_probe_seconds: int = HOUR
    quota_defer_seconds: int = 15 * 60
    # SPEC 8: per-API requests a minute spent by every thread and process on the database,
    # 90% of Calendar's 10,000-a-minute project quota; People publishes none (see README).
    quota_calendar_per_minute: int = 9000
    quota_people_per_minute: int = 9000
    quota_max_wait_seconds: float = 30.0
    # SPEC 3 mass-delete guard: held when over this share of a mirror AND at least this many.
    mass_delete_share: float = 0.5
    mass_delete_min_items: int = 20

    retry_max_attempts: int = 5
    retry_initial_wait_seconds: float = 1.0
    retry_max_wait_seconds: float = 32.0
    http_timeout_seconds: float = 30.0
    concurrency: int = 8

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with the given values changed (None leaves a value as it is), validated: where
        command-line flags meet the resolved configuration."""
        return replace(self, **_checked_overrides(changes))

    def interval_for(self, integration: str) -> int:
        """Default sync interval of an integration type."""
        if integration == "google_contacts":
            return self.contacts_interval_seconds
        return self.calendar_interval_seconds


def default_db_path(env: Mapping[str, str]) -> Path:
    """`$XDG_DATA_HOME/syncctl/syncctl.db`, falling back to `~/.local/share`."""
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "syncctl" / "syncctl.db"


def default_config_path(env: Mapping[str, str]) -> Path:
    """`$XDG_CONFIG_HOME/syncctl/config.toml`, falling back to `~/.config`."""
    config_home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "syncctl" / "config.toml"


def load_settings(
    *,
    db: Path | str | None = None,
    config: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Resolve settings from flags (`--db`, `--config`), the environment, the TOML config file
    and defaults; every value is checked for type and range (ConfigError names the setting)."""
    env = os.environ if env is None else env
    if config is not None and not str(config):
        raise ConfigError("--config must not be empty")
    explicit_config = str(config) if config is not None else env.get(Env.CONFIG)
    config_path = Path(explicit_config) if explicit_config else default_config_path(env)
    values: dict[str, Any] = {}
    if explicit_config or config_path.exists():
        values.update(_read_config_file(config_path))
    values["db_path"] = _db_path(db, env, values.pop("db", None), config_path)
    for name, variable in (
        (("google_endpoint", Env.GOOGLE_ENDPOINT)),
        ("webhook_url", Env.WEBHOOK_URL),
    ):
        if env.get(variable):
            values[name] = _checked(name, env[variable], variable)
    values.update(_checked_overrides(overrides))
    return Settings(**values)


def _db_path(
    flag: Path | str | None, env: Mapping[str, str], file_value: Any, config_path: Path
) -> Path:
    if flag is not None:
        if not str(flag):
            raise ConfigError("--db must not be empty")
        return Path(flag)
    if env.get(Env.DB):
        return Path(env[Env.DB])
    if file_value is not None:
        return Path(file_value).expanduser()
    return default_db_path(env)


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"config file {path} is a directory") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {_one_line(exc)}") from exc
    unknown = sorted(set(data) - CONFIG_FILE_KEYS)
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting {_shown(unknown[0])}")
    if "db" in data and (not isinstance(data["db"], str) or not data["db"].strip()):
        raise ConfigError(
            f"config file {path}: setting db must be a non-empty path string,"
            f" got {_shown(data['db'])}"
        )
    return {
        name: value
        if name == "db"
        else _checked(name, value, f"config file {path}: setting {name}")
        for name, value in data.items()
    }


# -- validation: every value is checked when it loads (SPEC 1) ---------------------------------

MAX_INTERVAL_SECONDS = 365 * DAY
MAX_COUNT = 1_000_000
# Bounds where the general rules (a count is a positive whole number up to MAX_COUNT; a duration
# in seconds is positive and at most MAX_INTERVAL_SECONDS) are not tight enough. A new setting
# whose range is narrower adds its bounds here.
BOUNDS: dict[str, tuple[float, float]] = {
    "concurrency": (1, 1024),
    "retry_max_attempts": (1, 100),
    "backoff_multiplier": (1, 16),
    "interval_cap_multiplier": (1, 16),
    "people_sync_token_lifetime_seconds": (2, MAX_INTERVAL_SECONDS),
    "fleet_breaker_failure_ratio": (0, 1),
    "mass_delete_share": (0, 1),  # a share of a mirror: above 0, at most all of it
    "fresh_token_early_fraction": (0, 1),  # a share of an interval
    "webhook_coalesce_seconds": (0, 3600),
    "webhook_dispatch_workers": (1, 256),
    "lease_seconds": (10, 7 * DAY),
    "calendar_list_refresh_seconds": (0, MAX_INTERVAL_SECONDS),
}
# A stored interval (sync_schedule) read back is clamped to at most this: the longest interval
# valid settings can produce.
MAX_STORED_INTERVAL_SECONDS = MAX_INTERVAL_SECONDS * int(BOUNDS["interval_cap_multiplier"][1])
URL_SETTINGS = frozenset({"google_endpoint", "webhook_url"})


def _field_kinds() -> dict[str, set[type]]:
    hints = get_type_hints(Settings)
    kinds: dict[str, set[type]] = {}
    for item in fields(Settings):
        hint = hints[item.name]
        kinds[item.name] = set(get_args(hint)) if get_args(hint) else {hint}
    return kinds


_KINDS = _field_kinds()
TUNABLES = set(_KINDS) - {"db_path", "google_endpoint", "webhook_url"}
CONFIG_FILE_KEYS = TUNABLES | {"db"} | URL_SETTINGS


def _checked(name: str, value: Any, where: str) -> Any:
    """The value, checked (and for floats, widened from int) for the setting; else ConfigError."""
    kinds = _KINDS[name]
    if value is None and type(None) in kinds:
        return None
    if bool in kinds:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {_shown(value)}")
        return value
    if int in kinds or float in kinds:
        return _checked_number(name, value, where, whole=int in kinds and float not in kinds)
    if str in kinds:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {_shown(value)}")
        if name in URL_SETTINGS:
            _check_url(value, where)
        return value
    if Path in kinds:
        if not isinstance(value, str | Path) or not str(value):
            raise ConfigError(f"{where} must be a non-empty path, got {_shown(value)}")
        return Path(value)
    return value


def _checked_number(name: str, value: Any, where: str, *, whole: bool) -> int | float:
    low, high = BOUNDS.get(name, (1 if whole else 0, _default_high(name)))
    if whole:
        in_range = f"from {_num(low)} to {_num(high)}"
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            unit = " of seconds" if name.endswith("_seconds") else ""
            raise ConfigError(
                f"{where} must be a whole number{unit} {in_range}, got {_shown(value)}"
            )
        return value
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not low < value <= high:
        raise ConfigError(
            f"{where} must be a number above {_num(low)} and at most {_num(high)},"
            f" got {_shown(value)}"
        )
    return float(value)


def _default_high(name: str) -> int:
    return MAX_INTERVAL_SECONDS if name.endswith("_seconds") else MAX_COUNT


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_url(text: str, where: str) -> None:
    """A URL has an http(s) scheme, a host and, if given, a port from 1 to 65535."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where} is not a URL ({_one_line(exc)}), got {_shown(text)}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where} must be an http:// or https:// URL with a host, got {_shown(text)}"
        )
    if port == 0:
        raise ConfigError(f"{where} has port 0 (use 1-65535), got {_shown(text)}")
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise ConfigError(f"{where} must not contain spaces or control characters")


def _shown(value: Any) -> str:
    """A value as it appears in an error: its repr, on one line and short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _checked_overrides(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides given in code or by flags (None means not given), each checked."""
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if value is None:
            continue
        if name not in _KINDS:
            raise ConfigError(f"unknown setting {name!r}")
        checked[name] = _checked(name, value, f"setting {name}")
    return checked
