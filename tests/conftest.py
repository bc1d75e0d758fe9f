"""Shared fixtures: the misbehaving loopback servers are available to every test,
and `store`, an open state file in the test's tmp_path. Every test leaves logging
as it found it."""

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from slamon.store.sqlite import StateStore

pytest_plugins = ["tests.misbehaving", "tests.pg"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    s = StateStore(tmp_path / "state.sqlite3")
    await s.open()
    yield s
    await s.close()


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A CLI test configures logging onto pytest's captured stream, which is closed
    after that test: the next test must not write to it."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.setLevel(level)
    # configure_logging routes warnings to logging; undone inside the test's own
    # warnings context, else the next test's configure_logging finds it "on"
    logging.captureWarnings(False)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
