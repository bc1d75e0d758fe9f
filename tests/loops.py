"""Run a module's tests on both event loops: the daemon uses uvloop, whose transports
(TLS above all) are not asyncio's, and tests default to asyncio.

Import `both_loops` into a test module to override pytest-asyncio's
`event_loop_policy` for that module only (a plugin fixture would apply everywhere).
"""

from __future__ import annotations

import asyncio

import pytest
import uvloop


@pytest.fixture(scope="module", params=["asyncio", "uvloop"], name="event_loop_policy")
def both_loops(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()  # type: ignore[no-any-return]
    return asyncio.DefaultEventLoopPolicy()
