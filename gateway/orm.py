"""Tortoise's own CLI reads this (``tortoise -c gateway.orm.TORTOISE_ORM makemigrations``)."""
import os

from .settings import DEFAULT_DATABASE_URL, normalise_database_url, tortoise_config

TORTOISE_ORM = tortoise_config(normalise_database_url(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL))
