"""`slamon run`'s config file read and parsed in a forked child while slamon imports the
rest of itself.

At 10,000 targets with an SLA each the file is ~2 MB: ~0.4 s of YAML, and slamon's
imports (pydantic models, aiohttp, the daemon) ~0.45 s. Forked first thing, with only the
YAML leaf (`yamlfile`) imported, a child reads and parses the file on the second core
while the parent imports; the parent then unmarshals plain data (maps, lists, scalars),
which also leaves it without the parser's scattered memory (`yamlfile._compact`).

The child is the only one to read the file, so the parent validates exactly what was
parsed. A child that gives nothing (no fork, killed, out of memory) leaves the read to
the parent, as without one: the config is the same either way.
"""

from __future__ import annotations

import marshal
import os
from typing import Any

from slamon.config.yamlfile import ConfigError, dollar_free, parse_yaml, read_text
from slamon.util.forked import Forked, fork_call

#: files smaller than this parse in under ~0.1 s, less than a child is worth
FROM_BYTES = 256 * 1024

#: the parsed file and whether its text is `dollar_free`
Parsed = tuple[dict[str, Any], bool]
#: what the child sends: the parsed file as `marshal` bytes, or as itself when it holds
#: what marshal cannot carry (a timestamp, deep nesting), and whether its text is
#: `dollar_free`; or the ConfigError reading or parsing it raised. marshal writes plain
#: data ~10x quicker than pickle (4 ms against ~35 ms for 2 MB of YAML), on the path
#: `slamon run` waits for.
Answer = tuple[bytes | dict[str, Any], bool] | ConfigError
ReadAhead = Forked[Answer]


def _read_and_parse(name: str) -> Answer:
    try:
        text = read_text(name)
        # the parent's unmarshalling (or unpickling) makes the compact copy
        data, plain = parse_yaml(text, name, compact=False), dollar_free(text)
    except ConfigError as exc:
        return exc
    try:
        return marshal.dumps(data), plain
    except ValueError:
        return data, plain  # pickled whole


def start(path: str | os.PathLike[str], minimum: int | None = None) -> ReadAhead | None:
    """A child reading and parsing the file at `path`; None for a file under `minimum`
    bytes (default FROM_BYTES), one that cannot be seen, or when no child can be forked."""
    name = os.fspath(path)
    try:
        size = os.stat(name).st_size
    except OSError:
        return None  # the read in the parent says what is wrong
    if size < (FROM_BYTES if minimum is None else minimum):
        return None
    child = fork_call(lambda: _read_and_parse(name))
    return None if isinstance(child, str) else child


def parsed(ahead: ReadAhead) -> Parsed | None:
    """The child's parsed file and whether its text is `dollar_free`, or None when it
    gave nothing (the caller reads the file). A file the child found invalid raises its
    ConfigError here."""
    answer, _ = ahead.wait()
    if isinstance(answer, ConfigError):
        raise answer
    if not isinstance(answer, tuple):
        return None
    data, plain = answer
    if isinstance(data, bytes):
        data = marshal.loads(data)  # our own bytes, from our own fork
    return data, plain
