"""Structured logging: readable on a terminal, one JSON object per line everywhere else."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog once per process (driver and each actor).

    JSON when stderr is not a TTY (Ray job logs, CI, log shippers), console otherwise.
    Job and shard ids travel as bound context variables, so every line carries them.
    """
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # Resolve sys.stderr at each call, not at configure time: a redirected or replaced
        # stream (pytest capture, a daemonised driver) must not leave a dangling handle.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
