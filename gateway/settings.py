"""Settings from the environment; read once by the CLI, passed to the app factory."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

DEFAULT_DATABASE_URL = "sqlite://./var/loyalty.sqlite3"
PLATFORMS = ("youzan", "douyin", "eleme", "taobao")


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


def normalise_database_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgres://" + url.removeprefix("postgresql://")
    return url


def tortoise_config(database_url: str) -> dict:
    return {
        "connections": {"default": database_url},
        "apps": {"loyalty": {"models": ["loyalty_core.models"], "migrations": "loyalty_core.migrations",
                             "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }
