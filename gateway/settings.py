"""Settings from the environment; read once by the CLI, passed to the app factory."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

DEFAULT_DATABASE_URL = "sqlite://./var/loyalty.sqlite3"
PLATFORMS = ("youzan", "douyin", "eleme", "taobao")
# PostgreSQL (asyncpg) waits at most this long for a new connection, and for any one statement of
# a serving process, so that an unreachable or hung database is answered 503 in seconds. A
# ``DATABASE_URL`` query parameter of the same name wins (``?command_timeout=600`` for a long
# ``loyalty verify``); migrations run without the statement limit.
DATABASE_CONNECT_TIMEOUT = 2
DATABASE_COMMAND_TIMEOUT = 4.0
DATABASE_ACQUIRE_TIMEOUT = 2.0  # waiting for a free pooled connection (``?acquire_timeout=``, gateway/db.py)
POSTGRES_SCHEMES = ("postgres://", "postgresql://", "asyncpg://")
POSTGRES_ENGINE = "gateway.db"  # Tortoise's asyncpg client with a pool fix (see gateway/db.py)


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    redis_prefix: str = "loyalty:"
    secret: str | None = None
    log_level: str = "INFO"
    wechat_api_base_url: str = "https://api.weixin.qq.com"
    wechatpay_api_base_url: str = "https://api.mch.weixin.qq.com"
    platform_base_urls: dict[str, str] = field(default_factory=dict)
    idempotency_lease_seconds: float = 60.0
    outbox_lease_seconds: float = 60.0
    outbox_retention_days: float = 7.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        return cls(
            database_url=normalise_database_url(env.get("DATABASE_URL") or DEFAULT_DATABASE_URL),
            redis_url=env.get("REDIS_URL") or None,
            redis_prefix=env.get("REDIS_PREFIX", "loyalty:"),
            secret=env.get("LOYALTY_SECRET") or None,
            log_level=env.get("LOG_LEVEL", "INFO").upper(),
            wechat_api_base_url=env.get("WECHAT_API_BASE_URL", "https://api.weixin.qq.com"),
            wechatpay_api_base_url=env.get("WECHATPAY_API_BASE_URL", "https://api.mch.weixin.qq.com"),
            platform_base_urls={p: env[f"{p.upper()}_API_BASE_URL"] for p in PLATFORMS if env.get(f"{p.upper()}_API_BASE_URL")},
            idempotency_lease_seconds=_positive(env, "IDEMPOTENCY_LEASE_SECONDS", 60.0),
            outbox_lease_seconds=_positive(env, "OUTBOX_LEASE_SECONDS", 60.0),
            outbox_retention_days=_positive(env, "OUTBOX_RETENTION_DAYS", 7.0),
        )

    def require_secret(self) -> str:
        if not self.secret:
            raise SettingsError("LOYALTY_SECRET is required (at least 16 characters); `loyalty demo` makes one for you")
        if len(self.secret) < 16:
            raise SettingsError("LOYALTY_SECRET must be at least 16 characters")
        return self.secret

    def with_demo_secret(self, var_dir: Path = Path("var")) -> "Settings":
        """The demo keeps a generated secret under ./var so its encrypted data survives restarts."""
        if self.secret:
            return self
        var_dir.mkdir(parents=True, exist_ok=True)
        path = var_dir / "demo-secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return Settings(**{**self.__dict__, "secret": path.read_text().strip()})


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if not 0 < value < float("inf"):
        raise SettingsError(f"{name} must be greater than zero")
    return value


def normalise_database_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgres://" + url.removeprefix("postgresql://")
    return url


def with_timeouts(database_url: str, command_timeout: float | None = DATABASE_COMMAND_TIMEOUT) -> str:
    """A PostgreSQL URL with asyncpg's connect ``timeout`` and ``command_timeout`` added, unless
    the URL sets them itself. Other URLs (SQLite) are returned as they are."""
    if not database_url.startswith(POSTGRES_SCHEMES):
        return database_url
    present = {name for name, _ in parse_qsl(urlsplit(database_url).query, keep_blank_values=True)}
    wanted = {"timeout": DATABASE_CONNECT_TIMEOUT, "command_timeout": command_timeout}
    added = {name: value for name, value in wanted.items() if value is not None and name not in present}
    if not added:
        return database_url
    return database_url + ("&" if "?" in database_url else "?") + urlencode(added)


def connection_config(database_url: str, command_timeout: float | None = DATABASE_COMMAND_TIMEOUT) -> str | dict:
    """Tortoise's connection entry: the URL as it is for SQLite; for PostgreSQL the URL's
    parameters (timeouts added) on the engine of ``gateway/db.py``."""
    if not database_url.startswith(POSTGRES_SCHEMES):
        return database_url
    from tortoise.backends.base.config_generator import expand_db_url

    return {"engine": POSTGRES_ENGINE, "credentials": expand_db_url(with_timeouts(database_url, command_timeout))["credentials"]}


def tortoise_config(database_url: str, command_timeout: float | None = DATABASE_COMMAND_TIMEOUT) -> dict:
    return {
        "connections": {"default": connection_config(database_url, command_timeout)},
        "apps": {"loyalty": {"models": ["loyalty_core.models"], "migrations": "loyalty_core.migrations",
                             "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }
