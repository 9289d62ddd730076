"""Marketplace stores (Youzan now; Douyin shop, Eleme, Taobao/Tmall to come): one module per
platform behind one small interface (``base.Platform``: which shop a delivery names, verify its
signature, read it into the core's ``MarketEvent`` s, the ack the platform expects) and a registry.
"""
from __future__ import annotations

from .base import Platform
from .youzan import Youzan

PLATFORMS: dict[str, Platform] = {"youzan": Youzan()}
