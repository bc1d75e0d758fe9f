"""Every SLA's policy digest worked out in a forked child while start-up reads the state.

At 10,000 SLAs the digests are ~0.6 s of Python (each SLA's canonical document, then
keccak256), and start-up needs them only once the state is read and the windows restored,
which takes as long again. A child forked just before holds the very config object the
tracker will run, so its digests describe exactly that config: nothing is read again, no
file can have changed in between. It sends them down a pipe and exits; on the second core
the two halves overlap.

Whatever goes wrong with the child (no fork, killed, an exception), the caller gets None and
the tracker works the digests out itself, as without a child: the child can make start-up
faster, never different.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pickle
import signal
import threading
from dataclasses import dataclass
from typing import NoReturn

from slamon.config.root import Config
from slamon.sla.policy import PolicyDigests, policy_digests
from slamon.util.log import get_logger

#: below this many SLAs the digests take under ~60 ms, less than is worth a process
FROM_SLAS = 1000

#: what the daemon handles; blocked across the fork so that none reaches the child before
#: it has given up the daemon's handlers (a Ctrl-C reaches the whole process group)
_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@dataclass
class DigestsAhead:
    """A child working out `config`'s policy digests: `take` them once, or `cancel`."""

    config: Config
    pid: int
    #: the pipe's read end, -1 once the child is reaped
    fd: int

    async def take(self) -> PolicyDigests | None:
        """The child's digests, or None (logged) when it gave none."""
        blob, status = await self._collected()
        why: str | None = None
        if status is None:
            why = "lost"
        elif os.WIFSIGNALED(status):
            why = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        elif os.waitstatus_to_exitcode(status) != 0:
            why = f"exited with {os.waitstatus_to_exitcode(status)}"
        if why is None:
            try:
                digests = pickle.loads(blob)  # our own bytes, from our own fork
            except Exception as exc:
                why = f"answer unreadable ({type(exc).__name__})"
            else:
                if isinstance(digests, dict):
                    return PolicyDigests(self.config, digests)
                why = "answer unreadable"
        get_logger().warning("policy_digests_child_failed", reason=why,
                             slas=len(self.config.slas))
        return None

    def cancel(self) -> None:
        """Stop the child and reap it, unless `take` did: start-up failed or stopped before
        the digests were needed."""
        if self.fd < 0:
            return  # read and reaped
        with contextlib.suppress(ProcessLookupError):  # gone already: reaped below
            os.kill(self.pid, signal.SIGKILL)
        self._collect()

    async def _collected(self) -> tuple[bytes, int | None]:
        """All the child wrote, once it closed the pipe, read on the event loop: a thread
        would stay behind, and forbid the next fork (`start`)."""
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
        return self._collect(chunks)

    def _collect(self, chunks: list[bytes] | None = None) -> tuple[bytes, int | None]:
        """What the child wrote (read here unless `chunks` holds it) and its wait status
        (None if it was reaped elsewhere). The pipe is closed and the child reaped after."""
        if chunks is None:
            chunks = []
            try:
                os.set_blocking(self.fd, True)
                while chunk := os.read(self.fd, 1 << 20):
                    chunks.append(chunk)
            except OSError:
                pass
        os.close(self.fd)
        self.fd = -1
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return b"".join(chunks), None
        return b"".join(chunks), status


def start(config: Config, minimum: int | None = None) -> DigestsAhead | None:
    """Fork a child working out `config`'s digests; None when not worth it (under `minimum`
    SLAs, default FROM_SLAS) or not safe: another thread runs (it could hold a lock the
    child would need), or the system refuses a process."""
    if len(config.slas) < (FROM_SLAS if minimum is None else minimum) or not hasattr(os, "fork"):
        return None
    if threading.active_count() > 1:
        return None
    read_end, write_end = os.pipe()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        pid = os.fork()
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        os.close(read_end)
        os.close(write_end)
        get_logger().warning("policy_digests_child_failed", reason=f"no fork: {exc.strerror}",
                             slas=len(config.slas))
        return None
    if pid == 0:
        os.close(read_end)
        _child(config, write_end, blocked)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    os.close(write_end)
    return DigestsAhead(config, pid, read_end)


def _child(config: Config, fd: int, mask: set[int | signal.Signals]) -> NoReturn:
    """The child: the digests by SLA id, pickled down `fd`; never returns into the daemon's
    code (its event loop, its exit handlers, its buffered output are the parent's)."""
    code = 1
    try:
        gc.disable()  # a collection would touch, and so copy, every page of the heap
        # the daemon's handlers would wake the parent's event loop through the shared
        # wakeup fd: a Ctrl-C would count twice there and force its exit
        signal.set_wakeup_fd(-1)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        blob = memoryview(pickle.dumps(policy_digests(config).digests,
                                       protocol=pickle.HIGHEST_PROTOCOL))
        while blob:
            blob = blob[os.write(fd, blob):]
        code = 0
    except BaseException:  # the parent reports a child that gave nothing
        pass
    finally:
        os._exit(code)
