"""structlog set-up: small processors, each doing one thing.

JSON lines to stdout by default (journald and container runtimes pick them
up), console rendering for people at a terminal. Every string value passes
through URL redaction so a credential in a target URL never reaches a log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from slamon.util.args import LOG_FORMAT_ENV, LOG_FORMATS, LOG_LEVEL_ENV
from slamon.util.redact import redact_text

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def redact_values(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str) and "://" in value:
            event_dict[key] = redact_text(value)
    return event_dict


def effective_level(configured: str) -> str:
    """$SLAMON_LOG_LEVEL (set by `--log-level` too) overrides the config."""
    env = os.environ.get(LOG_LEVEL_ENV, "").strip().lower()
    return env if env in LEVELS else configured


def effective_format(configured: str) -> str:
    """$SLAMON_LOG_FORMAT (set by `--log-format` too) overrides the config."""
    env = os.environ.get(LOG_FORMAT_ENV, "").strip().lower()
    return env if env in LOG_FORMATS else configured


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """slamon's own events and every standard-library record (aiohttp, asyncio,
    warnings) go through one chain to one stream: a line is one event in the
    configured format, a traceback is a field of that event, never loose text."""
    renderer: structlog.typing.Processor
    if effective_format(fmt) == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=(stream or sys.stdout).isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[structlog.typing.Processor] = [
        redact_values,
        structlog.processors.format_exc_info,
        renderer,
    ]
    numeric = LEVELS[effective_level(level)]
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream) if stream is not None else _Stdout()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name,
                           structlog.stdlib.ExtraAdder(allow=("reason", "peer"))],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    ))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OURS, False):
            root.removeHandler(old)
    setattr(handler, _OURS, True)
    handler.addFilter(_bad_request)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is when a record comes (a test harness swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def _bad_request(record: logging.LogRecord) -> bool:
    """A client that sends garbage (an over-long line, TLS to the plain port) gets a 400
    from aiohttp, which logs it as a server error with a traceback. It is the client's
    fault: a warning with the reason, so nobody can fill the log with tracebacks."""
    exc = record.exc_info[1] if record.exc_info else None
    if record.name != "aiohttp.server" or exc is None or not _is_http_processing_error(exc):
        return True
    peer = record.getMessage().rpartition(" from ")[2]
    record.msg, record.args, record.exc_info, record.exc_text = "http_bad_request", None, None, None
    record.levelno, record.levelname = logging.WARNING, "WARNING"
    record.reason = f"{type(exc).__name__}: {exc}"[:200]
    record.peer = peer
    return logging.getLogger().getEffectiveLevel() <= logging.WARNING


def _is_http_processing_error(exc: BaseException) -> bool:
    # aiohttp is imported by the server only: look it up rather than import it here
    errors = sys.modules.get("aiohttp.http_exceptions")
    return errors is not None and isinstance(exc, errors.HttpProcessingError)


#: marks the handler configure_logging installed, so a second call replaces it
#: and handlers installed by others (pytest's capture) stay
_OURS = "_slamon_handler"


def get_logger(**initial: Any) -> Any:
    return structlog.get_logger("slamon", **initial)
