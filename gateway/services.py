"""What a request handler or the worker may use, built once per process by the app factory."""
from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from loyalty_core.clock import Clock
from loyalty_core.crypto import Vault

from .redis import KeySpace
from .settings import Settings


@dataclass
class Services:
    settings: Settings
    vault: Vault
    clock: Clock
    cache: KeySpace


SERVICES = web.AppKey("services", Services)
