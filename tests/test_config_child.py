"""A large config's reload is read in a child process (slamon/app/config_child.py): the
child answers what `load_config` answers in the daemon (the config, or the same errors),
a cancelled read kills it, and a daemon whose child gives no answer reads on a thread.
Real child processes, real files, a FIFO where a read must hang."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
import structlog

import slamon
from slamon.app import config_child
from slamon.app.config_child import ChildFailed, crash_name, load_apart
from slamon.app.daemon import Daemon
from slamon.config.loader import ConfigError, load_config
from slamon.sla import tracker
from slamon.sla.policy import policy_digests, policy_document_2, policy_json_2
from slamon.sla.tracker import policies_text
from slamon.util.docpack import unpack_document
from slamon.util.keccak import hashes_to

TARGET = '  - {{id: {tid}, kind: http, interval: 10s, timeout: 2s, http: {{url: "http://127.0.0.1:9/{tid}", headers: {{Authorization: "Bearer ${{PROBE_TOKEN}}"}}}}}}\n'  # noqa: E501


def write_config(tmp_path: Path, objective: str = "0.99", extra: str = "") -> Path:
    """A main file with an SLO and an SLA, its targets in an included file that takes a
    secret from the environment: what the child must resolve as the daemon does."""
    (tmp_path / "targets.d").mkdir(exist_ok=True)
    (tmp_path / "targets.d" / "web.yaml").write_text(
        "targets:\n" + "".join(TARGET.format(tid=t) for t in ("a", "b")) + extra)
    path = tmp_path / "slamon.yaml"
    path.write_text(textwrap.dedent(f"""
        logging: {{level: warning}}
        state: {{path: "{tmp_path}/state.sqlite3"}}
        include: ["targets.d/*.yaml"]
        slos:
          - {{id: web, targets: [a, b], objective: {objective}, window: 1h}}
        slas:
          - {{id: web-sla, slo: web, period: {{kind: monthly}}}}
        """))
    return path


async def test_the_child_answers_what_load_config_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_TOKEN", "s3cret-token")
    path = write_config(tmp_path)
    answer = await load_apart(path)
    apart, digests = answer.config, answer.digests
    assert apart == load_config(path)
    here_too = policy_digests(load_config(path), documents=True)
    assert digests == here_too.digests
    assert set(digests) == {"web-sla"}
    # and each SLA's document, packed: the one its digest hashes, as made here
    assert answer.documents == here_too.documents
    document = unpack_document(answer.documents["web-sla"])
    assert document is not None and hashes_to(document, digests["web-sla"])
    assert "s3cret-token" not in document
    headers = apart.targets[0].http.headers if apart.targets[0].http else {}
    assert "s3cret-token" in str(headers), "the child reads the daemon's environment"

    # an invalid file: the same errors, naming the file and the place
    (tmp_path / "targets.d" / "web.yaml").write_text(
        "targets:\n" + TARGET.format(tid="a").replace("interval: 10s", "interval: 0s"))
    with pytest.raises(ConfigError) as here:
        load_config(path)
    with pytest.raises(ConfigError) as there:
        await load_apart(path)
    assert there.value.errors == here.value.errors
    assert there.value.source == here.value.source
    assert any("interval" in e for e in there.value.errors), there.value.errors

    # an unreadable file is a ConfigError too, not a failed child
    with pytest.raises(ConfigError) as missing:
        await load_apart(tmp_path / "nowhere.yaml")
    assert "nowhere.yaml" in str(missing.value)


async def test_a_child_of_another_slamon_gives_no_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package upgraded on disk under a running daemon: the child's models would not be
    the daemon's, so it refuses rather than hand them over."""
    monkeypatch.setenv("PROBE_TOKEN", "t")
    monkeypatch.setattr(slamon, "__version__", "0.0.0+running")
    with pytest.raises(ChildFailed, match=r"the daemon 0\.0\.0"):
        await load_apart(write_config(tmp_path))


async def test_a_crashed_child_is_named_by_its_exception_class_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that dies with a traceback (before it can answer): the daemon's log says
    which exception, never its message, which may quote a config value."""
    monkeypatch.setattr(config_child, "_BOOT",
                        "import sys; raise KeyError('token hunter2 in ' + sys.argv[1])")
    with pytest.raises(ChildFailed) as failed:
        await load_apart(write_config(tmp_path))
    assert str(failed.value) == "the config reader exited with 1 after an uncaught KeyError"
    # a last line that is no exception's: nothing of it is told
    monkeypatch.setattr(config_child, "_BOOT", (
        "import sys; sys.stderr.write('Traceback (most recent call last):\\n"
        "  File x\\nhunter2\\n'); sys.exit(3)"))
    with pytest.raises(ChildFailed) as failed:
        await load_apart(write_config(tmp_path))
    assert str(failed.value) == "the config reader exited with 3"


def test_crash_name_reads_the_last_line_of_a_traceback() -> None:
    tb = b"Traceback (most recent call last):\n  File \"x\", line 1\n"
    assert crash_name(tb + b"yaml.scanner.ScannerError: secret: x\n") == "yaml.scanner.ScannerError"
    assert crash_name(tb + b"KeyboardInterrupt\n\n") == "KeyboardInterrupt"
    assert crash_name(tb + b"MemoryError\n") == "MemoryError"
    assert crash_name(tb + b"hunter2\n") is None
    assert crash_name(tb + b"Errorless: words\n") is None
    assert crash_name(b"KeyError: 'x'\n") is None  # no traceback: not one
    assert crash_name(b"") is None


def child_pids() -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return pids


async def test_a_cancelled_read_kills_the_child(tmp_path: Path) -> None:
    """The daemon stops during a reload whose file hangs (a FIFO nobody writes, as a hung
    mount): the child goes with it."""
    fifo = tmp_path / "slamon.yaml"
    os.mkfifo(fifo)
    before = child_pids()
    read = asyncio.create_task(load_apart(fifo))
    # opening the FIFO to write blocks until the child opened it to read
    fd = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
    try:
        assert child_pids() - before, "the child reads the FIFO"
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        assert child_pids() == before, "the child was killed and reaped"
        with pytest.raises(OSError) as broken:
            os.write(fd, b"targets: []\n")
        assert broken.value.errno == errno.EPIPE
    finally:
        os.close(fd)


async def test_a_reload_reads_a_large_config_in_a_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, with the threshold at one target: the reload reads in a child and
    applies what it read, the SLA judged (from the next period) by the digest the child
    worked out, which the daemon did not work out again; an invalid edit keeps the
    running config; a child that gives no answer is logged and the reload reads on a
    thread."""
    monkeypatch.setenv("PROBE_TOKEN", "t")
    monkeypatch.setattr(config_child, "FROM_TARGETS", 1)
    path = write_config(tmp_path)
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    try:
        write_config(tmp_path, objective="0.995")
        inline = policy_digests(load_config(path)).digests["web-sla"]
        hashed: list[object] = []

        def json_2(*args: Any) -> bytes:
            hashed.append(args)
            return policy_json_2(*args)

        built: list[object] = []

        def document_2(*args: Any) -> dict[str, Any]:
            built.append(args)
            return policy_document_2(*args)

        monkeypatch.setattr(tracker, "policy_json_2", json_2)
        monkeypatch.setattr(tracker, "policy_document_2", document_2)
        with structlog.testing.capture_logs() as logs:
            assert await daemon.reload()
        assert [e.get("reader") for e in logs if e["event"] == "reload_started"] == ["child"]
        assert daemon.parts.config.slos[0].objective == 0.995
        assert daemon.parts.config == load_config(path)
        assert daemon.parts.tracker is not None
        policies = daemon.parts.tracker.slas["web-sla"].policies
        assert policies[-1].digest == inline != policies[0].digest
        assert hashed == [], "the daemon worked out the digests the child had sent"
        # the new policy is stored with the child's document, not one built again here
        kept = unpack_document(policies[-1].packed)
        assert kept is not None and hashes_to(kept, inline)
        assert policies[-1].canonical() == kept
        built.clear()
        stored = json.loads(policies_text(policies))
        assert stored[-1]["document"] == policies[-1].packed
        # the held one was packed as the daemon started (it stored it then)
        assert policies[0].packed is not None
        assert built == [], "a document was built again to store it"

        (tmp_path / "targets.d" / "web.yaml").write_text("targets: [{id: a}]\n")
        with structlog.testing.capture_logs() as logs:
            assert not await daemon.reload()
        failed = [e for e in logs if e["event"] == "reload_failed"]
        assert failed and any("web.yaml" in e for e in failed[0]["errors"]), failed
        assert {t.id for t in daemon.parts.config.targets} == {"a", "b"}

        write_config(tmp_path, objective="0.9")
        monkeypatch.setattr(slamon, "__version__", "0.0.0+running")
        with structlog.testing.capture_logs() as logs:
            assert await daemon.reload()
        fell_back = [e for e in logs if e["event"] == "reload_reader_failed"]
        assert len(fell_back) == 1 and fell_back[0]["log_level"] == "warning", logs
        assert daemon.parts.config.slos[0].objective == 0.9

        # below the threshold the thread reads, as before, and builds the edited SLA's
        # document once: for its digest, kept for the store
        monkeypatch.setattr(config_child, "FROM_TARGETS", 3)
        write_config(tmp_path, objective="0.95")
        hashed.clear()
        built.clear()
        with structlog.testing.capture_logs() as logs:
            assert await daemon.reload()
        assert [e.get("reader") for e in logs if e["event"] == "reload_started"] == ["thread"]
        assert len(hashed) == 1
        policies = daemon.parts.tracker.slas["web-sla"].policies
        kept = unpack_document(policies[-1].packed)
        assert kept is not None and hashes_to(kept, policies[-1].digest)
        assert policies[-1].digest == policy_digests(load_config(path)).digests["web-sla"]
        assert json.loads(policies_text(policies))[-1]["document"] == policies[-1].packed
        assert built == [], "a document was built again to store it"
    finally:
        assert daemon.store is not None
        await daemon.store.close()
