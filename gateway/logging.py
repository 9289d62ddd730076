"""Structured JSON logs with personal data masked in every line."""
from __future__ import annotations

import logging
import re
import sys

import structlog

# A mainland mobile, also written with the country code (+86, 0086, 86) in front of it.
PHONE = re.compile(r"(?<!\d)((?:(?:\+|00)?86)?1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask(value: object) -> object:
    if isinstance(value, str):
        return PHONE.sub(r"\1****\2", value)
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mask(v) for v in value)
    return value


def mask_personal_data(_logger, _name, event_dict: dict) -> dict:
    return {key: mask(value) for key, value in event_dict.items()}


def configure(level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", level=getattr(logging, level, logging.INFO), stream=sys.stderr)
    logging.getLogger("tortoise").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            mask_personal_data,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
