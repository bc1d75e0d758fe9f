"""One call run in a forked child, its answer pickled back down a pipe.

For start-up work that can overlap on the second core and whose inputs are already in
memory (or on disk, read once, by the child only): the child holds the very objects the
parent has, so its answer is what the parent would have worked out. Whatever goes wrong
in the child (no fork, killed, an exception), the caller is told why and does the work
itself: a child can make start-up faster, never different.

The child never returns into the parent's code: its event loop, exit handlers and
buffered output are the parent's. It gives up the parent's signal handlers first, so a
Ctrl-C (which reaches the whole process group) kills it rather than waking the parent's
event loop a second time through the shared wakeup fd.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

T = TypeVar("T")

#: what the daemon handles; blocked across the fork so that none reaches the child before
#: it has given up the parent's handlers
_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@dataclass
class Forked(Generic[T]):
    """A child running one call: `wait` (or `wait_async`) for its answer once, or
    `cancel`. Each gives (answer, None) or (None, why there is none)."""

    pid: int
    #: the pipe's read end, -1 once the child is reaped
    fd: int

    def wait(self) -> tuple[T | None, str | None]:
        """The answer, blocking until the child is done."""
        return self._answer(*self._collect(None))

    async def wait_async(self) -> tuple[T | None, str | None]:
        """The answer, read on the event loop (a thread would stay behind, and forbid the
        next fork)."""
        import asyncio  # not before the fork of `slamon run`'s first child: it waits for it

        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        chunks: list[bytes] = []

        def readable() -> None:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""  # reported as an unreadable answer
            if chunk:
                chunks.append(chunk)
            elif not done.done():
                done.set_result(None)

        os.set_blocking(self.fd, False)
        loop.add_reader(self.fd, readable)
        try:
            await done
        finally:  # cancelled: `cancel` stops the child
            loop.remove_reader(self.fd)
        return self._answer(*self._collect(chunks))

    def cancel(self) -> None:
        """Stop the child if it still runs and reap it, unless its answer was taken."""
        if self.fd < 0:
            return  # read and reaped
        with contextlib.suppress(ProcessLookupError):  # gone already: reaped below
            os.kill(self.pid, signal.SIGKILL)
        self._collect(None)

    def _collect(self, chunks: list[bytes] | None) -> tuple[bytes, int | None]:
        """What the child wrote (read here unless `chunks` holds it) and its wait status
        (None if it was reaped elsewhere); the pipe is closed and the child reaped after."""
        if chunks is None:
            chunks = []
            with contextlib.suppress(OSError):
                os.set_blocking(self.fd, True)
                while chunk := os.read(self.fd, 1 << 20):
                    chunks.append(chunk)
        os.close(self.fd)
        self.fd = -1
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return b"".join(chunks), None
        return b"".join(chunks), status

    @staticmethod
    def _answer(blob: bytes, status: int | None) -> tuple[T | None, str | None]:
        if status is None:
            return None, "lost"
        if os.WIFSIGNALED(status):
            return None, f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        if (code := os.waitstatus_to_exitcode(status)) != 0:
            return None, f"exited with {code}"
        try:
            answer: T = pickle.loads(blob)  # our own bytes, from our own fork
        except Exception as exc:
            return None, f"answer unreadable ({type(exc).__name__})"
        return answer, None


def fork_call(fn: Callable[[], T]) -> Forked[T] | str:
    """`fn()` in a forked child; a string saying why not when it is not safe (another
    thread runs: it could hold a lock the child would need) or the system refuses."""
    if not hasattr(os, "fork"):
        return "no fork on this system"
    if threading.active_count() > 1:
        return "another thread runs"
    read_end, write_end = os.pipe()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        pid = os.fork()
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(read_end)
        os.close(write_end)
        return f"no fork: {exc.strerror}"
    if pid == 0:
        os.close(read_end)
        _child(fn, write_end, blocked)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    os.close(write_end)
    return Forked(pid, read_end)


def _child(fn: Callable[[], Any], fd: int, mask: set[int | signal.Signals]) -> NoReturn:
    """The child: `fn()` pickled down `fd`, then exit without running the parent's code."""
    code = 1
    try:
        gc.disable()  # a collection would touch, and so copy, every page of the heap
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        blob = memoryview(pickle.dumps(fn(), protocol=pickle.HIGHEST_PROTOCOL))
        while blob:
            blob = blob[os.write(fd, blob):]
        code = 0
    except BaseException:  # the parent reports a child that gave nothing
        pass
    finally:
        os._exit(code)
