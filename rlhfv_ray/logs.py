"""Logging for jobs and the Ray processes they start: INFO records of the library (`rlhfv_ray.*`)
to stderr with time and logger name. The library itself only creates loggers."""

from __future__ import annotations

import logging
import os
import sys
import warnings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Idempotent: a process that already has a handler on the library's logger keeps it. Off a
    terminal, Hugging Face's progress bars are turned off (read at import; Ray workers inherit it),
    since a bar redrawn line by line floods a log file."""
    if not sys.stderr.isatty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logger = logging.getLogger("rlhfv_ray")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
        logger.propagate = False  # Ray workers' root handler would print every record a second time
    logger.setLevel(level)
    # In a Ray Train worker: Ray Train logs each report (the whole metrics dict) at INFO, one line
    # per rank every `log_every` steps beside this library's progress line. Its logger is named
    # after the module's file.
    # torch warns at every ZeRO step that DeepSpeed calls a deprecated collective: not ours to fix
    warnings.filterwarnings("ignore", message=r".*all_gather_into_tensor.*deprecated", category=FutureWarning)
    context = sys.modules.get("ray.train.v2._internal.execution.context")
    if context is not None:
        logging.getLogger(context.__file__).setLevel(logging.WARNING)
