"""Command-line arguments shared by every command that reads a config (leaf: argparse
and os only, so `slamon --help` stays cheap)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

#: where `slamon` looks for its config when neither `-c` nor SLAMON_CONFIG names one
DEFAULT_CONFIG_PATH = "/etc/slamon/slamon.yaml"
CONFIG_ENV = "SLAMON_CONFIG"


def config_path(given: str | None, env: Mapping[str, str] | None = None) -> str:
    """The config file a command reads: `-c FILE`, else $SLAMON_CONFIG, else the default."""
    if given:
        return given
    value = (os.environ if env is None else env).get(CONFIG_ENV, "").strip()
    return value or DEFAULT_CONFIG_PATH


def add_config_argument(p: argparse.ArgumentParser, help_text: str = "config file") -> None:
    """`-c/--config FILE`, the same on every command that reads a config."""
    p.add_argument(
        "-c", "--config", metavar="FILE",
        help=f"{help_text} (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})",
    )

LOG_LEVEL_ENV = "SLAMON_LOG_LEVEL"
LOG_FORMAT_ENV = "SLAMON_LOG_FORMAT"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")

#: every environment variable slamon itself reads, for `slamon --help` and the docs
ENVIRONMENT = {
    CONFIG_ENV: f"config file when -c is not given (default {DEFAULT_CONFIG_PATH})",
    LOG_LEVEL_ENV: "log level over the config's logging.level: " + "|".join(LOG_LEVELS),
    LOG_FORMAT_ENV: "log format over the config's logging.format: " + "|".join(LOG_FORMATS),
    "SLAMON_DEBUG": "set to 1: show a traceback on an unexpected error",
    "SLAMON_API_TOKEN": "bearer token `slamon incident` sends to the API (server.auth)",
}


def add_logging_arguments(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """`--log-level` and `--log-format`: over $SLAMON_LOG_*, which are over the config."""
    p.add_argument("--log-level", choices=LOG_LEVELS, default=default,
                   help=f"log level (over ${LOG_LEVEL_ENV} and logging.level)")
    p.add_argument("--log-format", choices=LOG_FORMATS, default=default,
                   help=f"log format (over ${LOG_FORMAT_ENV} and logging.format)")


#: exit codes of every command: done, failed (the check or the work), unusable input
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def error(message: str) -> None:
    """One `slamon: error: ...` line on stderr, the way every command reports."""
    print(f"slamon: error: {message}", file=sys.stderr)
