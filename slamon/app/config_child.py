"""Read and validate a config file in a child process, for a reload of a large config.

Reading and validating the file of 10,000 targets takes ~3.5 s of Python (YAML, pydantic,
cross-checks), and the SLAs' policy digests and documents ~1.5 s more. On a thread they
share the GIL with the event loop, so every probe due meanwhile starts late; in a child
they run on another core, and the daemon only unpickles the answer (~1/15 of the work,
on a thread). The child runs the same code as the daemon (the package is imported from
the daemon's own location) and the same `load_config`, in the daemon's environment, so
`${VAR}` and includes resolve alike.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import re
import sys
from functools import partial
from pathlib import Path
from typing import Any

import slamon
from slamon.app import runtime
from slamon.config.loader import ConfigError, load_config
from slamon.config.root import Config
from slamon.sla.policy import PolicyDigests, policy_digests

#: a running config with at least this many targets reloads through a child: below it the
#: read is short (~0.35 ms of Python per target) and a child's start (~0.3 s of CPU) costs more
FROM_TARGETS = 1000

# The child's program: the package from the daemon's location, whatever the working
# directory or PYTHONPATH hold, then `main` below.
_BOOT = ("import sys; sys.path.insert(0, sys.argv[2]); "
         "from slamon.app.config_child import main; main(sys.argv[1], sys.argv[3])")


#: the last line of a traceback: an exception class (dotted), then ": message" or nothing
_RAISED = re.compile(
    rb"([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Iteration|Warning))(?::\s|$)")


def crash_name(stderr: bytes) -> str | None:
    """The class of the exception a crashed child's traceback ends with, or None. Never
    its message, which may quote a config value (a header's token)."""
    if b"Traceback (most recent call last):" not in stderr:
        return None
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), b"")
    found = _RAISED.match(last)
    return found.group(1).decode("ascii") if found else None


class ChildFailed(Exception):
    """The child gave no answer (killed, out of memory, another slamon on disk); the
    message names how, and never carries config values."""


def main(path: str, version: str) -> None:
    """The child: one pickled answer on stdout, whatever happens."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the answer
    gc.disable()  # builds long-lived objects only, then exits
    answer: tuple[str, Any]
    if version != slamon.__version__:
        answer = ("failed", f"the child runs slamon {slamon.__version__}, the daemon {version}")
    else:
        try:
            config = load_config(path)
            answer = ("ok", policy_digests(config, documents=True))
        except ConfigError as exc:
            answer = ("invalid", exc)
        except Exception as exc:  # reported by type only: a message may quote a value
            answer = ("failed", f"{type(exc).__name__} while reading")
    out.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
    out.flush()


async def load_apart(path: str | os.PathLike[str]) -> PolicyDigests:
    """`load_config(path)` in a child process (the answer's `config`), with every SLA's
    policy digest and packed document under it (`policy_digests`, ~1/2 of the read's
    work again at one SLA per target). Raises
    ConfigError as `load_config` does, ChildFailed when the child did not answer.
    Cancelled, it kills the child."""
    root = str(Path(slamon.__file__).resolve().parent.parent)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _BOOT, os.fspath(path), root, slamon.__version__,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0 or not out:
        raised = crash_name(err)
        raise ChildFailed(f"the config reader exited with {proc.returncode}"
                          + (f" after an uncaught {raised}" if raised else ""))
    try:
        kind, payload = await runtime.in_daemon_thread(partial(pickle.loads, out), "reload")
    except Exception as exc:
        raise ChildFailed(f"the config reader's answer did not load ({type(exc).__name__})"
                          ) from None
    if kind == "ok" and isinstance(payload, PolicyDigests) and isinstance(payload.config, Config):
        return payload
    if kind == "invalid" and isinstance(payload, ConfigError):
        raise payload
    raise ChildFailed(str(payload) if kind == "failed" else f"an answer of kind {kind!r}")
