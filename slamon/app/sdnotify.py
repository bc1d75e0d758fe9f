"""systemd's service notification protocol (sd_notify(3)), stdlib only.

The protocol is one datagram of `KEY=VALUE` lines sent to the unix socket
named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). It is
small enough that a dependency would add more than it saves: the `sdnotify`
package is unmaintained since 2017 and `systemd-python` needs libsystemd
headers to build. Sending never raises: a monitor must not stop because its
supervisor went away.

- `SystemdNotifier.from_env()` returns None outside systemd (no socket).
- `ready()` once the config is loaded, state restored and the first round is
  scheduled (the same moment /readyz turns 200).
- `watchdog_loop()` pings `WATCHDOG=1` from the event loop itself, at half of
  `$WATCHDOG_USEC`: a stalled loop stops pinging and systemd restarts slamon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping

#: how often STATUS= is refreshed when there is no watchdog
STATUS_EVERY = 10.0


class SystemdNotifier:
    """Sends notifications to one `$NOTIFY_SOCKET` address."""

    def __init__(self, address: str) -> None:
        if not address:
            raise ValueError("empty notify socket address")
        self.address = address
        self._target = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self.errors = 0
        self.last_status = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier | None:
        """A notifier for `$NOTIFY_SOCKET`, or None when not started by systemd."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if not address or not (address.startswith("/") or address.startswith("@")):
            return None  # unset, or a vsock:... address this module does not speak
        return cls(address)

    def notify(self, *lines: str) -> bool:
        """Send one datagram; False (counted in `errors`) when it could not be sent."""
        message = "\n".join(lines).encode("utf-8")
        try:
            self._sock.sendto(message, self._target)
        except OSError:
            self.errors += 1
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        lines = ["READY=1"]
        if status is not None:
            self.last_status = status
            lines.append(f"STATUS={_one_line(status)}")
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        self.last_status = text
        return self.notify(f"STATUS={_one_line(text)}")

    def reloading(self) -> bool:
        """Type=notify-reload semantics: RELOADING=1 with the monotonic time; send
        `ready()` when the reload is done (succeeded or not)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def status_line(targets: int, reports_queued: int | None = None, reloads_failed: int = 0) -> str:
    """The STATUS= text systemctl shows: `probing 1200 targets, 3 reports queued`."""
    parts = [f"probing {targets} target{'s' if targets != 1 else ''}"]
    if reports_queued is not None:
        parts.append(f"{reports_queued} report{'s' if reports_queued != 1 else ''} queued")
    if reloads_failed:
        parts.append(f"{reloads_failed} failed reload{'s' if reloads_failed != 1 else ''}")
    return ", ".join(parts)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of `$WATCHDOG_USEC`), or None when the watchdog
    is off or meant for another process (`$WATCHDOG_PID`)."""
    env = os.environ if environ is None else environ
    raw = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1e6 / 2


async def watchdog_loop(
    notifier: SystemdNotifier | None,
    status_fn: Callable[[], str] | None = None,
    *,
    interval: float | None = None,
    status_every: float = STATUS_EVERY,
) -> None:
    """Ping WATCHDOG=1 and refresh STATUS= from the event loop until cancelled.

    Runs as a task on the daemon's loop, so a loop that is blocked stops the
    pings and systemd's `WatchdogSec=` restarts the service. `interval`
    defaults to `watchdog_interval()`; without a watchdog only STATUS= is sent
    (every `status_every` seconds, and only when it changed).
    """
    if notifier is None:
        return
    if interval is None:
        interval = watchdog_interval()
    step = min(interval, status_every) if interval is not None else status_every
    loop = asyncio.get_running_loop()
    next_status = loop.time()
    while True:
        if interval is not None:
            notifier.watchdog()
        if status_fn is not None and loop.time() >= next_status:
            next_status = loop.time() + status_every
            try:
                text = status_fn()
            except Exception:  # a broken status line must not stop the watchdog
                text = ""
            if text and text != notifier.last_status:
                notifier.status(text)
        await asyncio.sleep(step)
