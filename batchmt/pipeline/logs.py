"""One logging system for every module and every process: structlog over stdlib `logging`.

Every event, whether a module logs it with `structlog.get_logger` (key=value events) or
with `logging.getLogger` (the storage and lease modules, libraries, Ray), becomes a stdlib
record and is rendered by one handler in one format:

- on a terminal: a short human line (time, level, event, fields), colour on a TTY only;
- elsewhere (a pipe, Ray job logs, CI) or with `--log-format json`: one JSON object a line.

Actors capture their events (`capture_events`) and hand them back with each shard result;
the driver replays them (`replay`), so a replica's lines look like the driver's and are
never torn into the progress line. The progress line itself is drawn by `console`, below
the log lines (`Console.status`).

Imported as a library (the Python API, no `configure_logging` call), events are stdlib
records under the `batchmt` logger: the host application's logging decides where they go;
nothing is printed to stdout.
"""

from __future__ import annotations

import json as jsonlib
import logging
import os
import sys
import threading
from collections.abc import Mapping
from typing import Any, TextIO

import structlog

LEVEL_ENV = "BATCHMT_LOG_LEVEL"
FORMAT_ENV = "BATCHMT_LOG_FORMAT"  # "json" | "console"; unset: console on a TTY, else json
FORMATS = ("auto", "console", "json")
# Libraries log at WARNING and above only; batchmt's own loggers at the level asked for.
_LIBRARY_LEVEL = logging.WARNING
_ROOT = "batchmt"


# What a record's own fields already say (level, logger name, time).
_NOT_SHOWN = ("event", "level", "logger", "timestamp")


class _Event(dict[str, Any]):
    """A structlog event as a stdlib record's message: readable through any formatter
    (`job_planned rows=49 shards=1`), and a dict for our own (ProcessorFormatter)."""

    def __str__(self) -> str:
        fields = " ".join(f"{k}={v}" for k, v in self.items() if k not in _NOT_SHOWN)
        return f"{self.get('event', '')} {fields}".rstrip()


def _to_record(
    logger: Any, name: str, event_dict: structlog.typing.EventDict
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    # As structlog's ProcessorFormatter.wrap_for_formatter, with a message that reads well
    # where our formatter is not installed (a notebook's logging.basicConfig).
    return (_Event(event_dict),), {"extra": {"_logger": logger, "_name": name}}


_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _use_stdlib() -> None:
    """structlog events become stdlib records under their module's logger name."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            *_SHARED,
            _to_record,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


class Console:
    """stderr on a terminal: log lines scroll above one status line that is redrawn.

    Every write goes through `lock`, so a log line (from any thread) never lands inside
    the progress line, and the status is drawn again below it.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._status = ""

    @property
    def stream(self) -> TextIO:
        # Resolved at each write: pytest capture or a daemon may replace sys.stderr.
        return sys.stderr

    def is_terminal(self) -> bool:
        return self.stream.isatty()

    def write(self, line: str) -> None:
        with self.lock:
            stream = self.stream
            if self._status:
                stream.write("\r\x1b[K")
            stream.write(line + "\n")
            if self._status:
                stream.write(self._status)
            stream.flush()

    def status(self, text: str) -> None:
        """Show `text` as the status line ("" removes it); terminals only."""
        with self.lock:
            stream = self.stream
            if self._status or text:
                stream.write("\r\x1b[K" + text)
                stream.flush()
            self._status = text


console = Console()


class _Handler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            console.write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise into the job
            self.handleError(record)


class _Capture(logging.Handler):
    """An actor's events, kept to travel back with the shard result (`take_events`)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.events.append(jsonlib.loads(self.format(record)))
        except Exception:  # noqa: BLE001
            self.handleError(record)


_capture: _Capture | None = None


def _formatter(renderer: structlog.typing.Processor, *, terminal: bool) -> logging.Formatter:
    foreign: list[structlog.typing.Processor] = [
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    last: list[structlog.typing.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        _positional_args,
    ]
    if terminal:
        last.append(_for_terminal)
    else:
        last.append(structlog.processors.format_exc_info)
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign,
        processors=[*last, renderer],
    )


def _positional_args(
    _: Any, __: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    event_dict.pop("positional_args", None)
    return event_dict


def _for_terminal(
    _: Any, __: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """A terminal shows the time of day and no module name; the JSON form has both."""
    event_dict.pop("logger", None)
    stamp = event_dict.get("timestamp")
    if isinstance(stamp, str) and "T" in stamp:
        event_dict["timestamp"] = stamp.split("T", 1)[1][:8]
    return event_dict


def resolve_format(log_format: str | None = None) -> str:
    """ "json" or "console": the option, else BATCHMT_LOG_FORMAT, else by stderr's kind."""
    chosen = (log_format or os.environ.get(FORMAT_ENV) or "auto").lower()
    if chosen not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {chosen!r}")
    if chosen == "auto":
        return "console" if sys.stderr.isatty() else "json"
    return chosen


def configure_logging(
    level: str = "INFO", *, json: bool | None = None, capture: bool = False
) -> None:
    """Configure logging once per process (driver and each actor): one handler on the
    root logger renders every record, structlog's and stdlib's alike.

    `json=None` follows `resolve_format()`. `capture=True` (actors) also keeps each event
    for `take_events`.
    """
    global _capture
    use_json = resolve_format() == "json" if json is None else json
    colors = not use_json and sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=colors, pad_event_to=24, sort_keys=False)
    )
    _use_stdlib()
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler | _Capture)]:
        root.removeHandler(old)
    handler = _Handler()
    handler.setFormatter(_formatter(renderer, terminal=not use_json))
    root.addHandler(handler)
    _capture = None
    if capture:
        _capture = _Capture()
        _capture.setFormatter(_formatter(structlog.processors.JSONRenderer(), terminal=False))
        root.addHandler(_capture)
    root.setLevel(_LIBRARY_LEVEL)
    logging.getLogger(_ROOT).setLevel(logging.getLevelName(level.upper()))
    # Python warnings (a library's DeprecationWarning) as records in the same format.
    logging.captureWarnings(True)


def adopt_logger(name: str, level: int) -> None:
    """Route a library logger that installs its own handler (Ray's) through ours."""
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(level)


def take_events() -> list[dict[str, Any]]:
    """The events captured since the last call (actors; [] where nothing captures)."""
    if _capture is None:
        return []
    events, _capture.events = _capture.events, []
    return events


def replay(event: Mapping[str, Any], **extra: Any) -> None:
    """Log an event captured in another process (an actor) through this process's
    handler, keeping its own time, level and logger name."""
    data = dict(event)
    name = str(data.pop("logger", None) or f"{_ROOT}.worker")
    level = logging.getLevelName(str(data.get("level", "info")).upper())
    levelno = level if isinstance(level, int) else logging.INFO
    logger = logging.getLogger(name)
    if not logger.isEnabledFor(levelno):
        return
    data.update(extra)
    data["logger"] = name
    record = logger.makeRecord(name, levelno, "(worker)", 0, _Event(data), (), None)
    # Marked as structlog's, so ProcessorFormatter renders it without re-stamping it.
    record._logger = logger
    record._name = str(data.get("level", "info"))
    logger.handle(record)


# Importing batchmt routes its structlog events into stdlib logging (never stdout), unless
# the host application configured structlog itself before.
if not structlog.is_configured():
    _use_stdlib()
