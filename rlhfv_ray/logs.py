"""Logging for jobs and the Ray processes they start: INFO records of the library (`rlhfv_ray.*`)
to stderr with time and logger name. The library itself only creates loggers."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Idempotent: a process that already has a handler on the library's logger keeps it."""
    logger = logging.getLogger("rlhfv_ray")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
    logger.setLevel(level)
