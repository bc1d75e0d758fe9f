"""Shared fixtures: the misbehaving loopback servers are available to every test,
and `store`, an open state file in the test's tmp_path."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from slamon.store.sqlite import StateStore

pytest_plugins = ["tests.misbehaving"]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StateStore]:
    s = StateStore(tmp_path / "state.sqlite3")
    await s.open()
    yield s
    await s.close()
