"""Outbox: signed reports as files, for a relayer (attest mode) or as a local copy.

Layout: ``<outbox>/<sla>/<periodId>-<signer>.json`` (the daemon's ``<outbox>`` is
``domain_outbox_dir``: one per chain id and contract) where ``<sla>`` is the slamon SLA id,
``<periodId>`` the *contract's* period id (decimal) and ``<signer>`` the checksummed signer
address. Each file holds one :meth:`SignedReport.to_json` line. Files are written atomically
(temp file, fsync, hard link to the final name, fsync of the directory) and never replaced:

- same report already there: nothing is written;
- the same report re-signed with another ``issuedAt`` (a restart re-signed a period it had
  already written): the existing file wins and is returned;
- any other difference: :class:`OutboxConflict` (the same signer must never attest two
  different results for one period).

Reading re-verifies every signature (:meth:`SignedReport.from_json`); parsed files are cached
by (size, mtime) so listing a large outbox stays cheap.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from eth_utils.address import to_checksum_address

from slamon.chain.eip712 import SignedReport
from slamon.config.root import Config
from slamon.util.fsutil import write_new_file

__all__ = [
    "Outbox",
    "OutboxConflict",
    "OutboxEntry",
    "OutboxError",
    "default_outbox_dir",
    "domain_outbox_dir",
    "outbox_dir",
]

_SLA_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_FILE_RE = re.compile(r"(0|[1-9][0-9]{0,19})-(0x[0-9a-fA-F]{40})\.json")


class OutboxError(Exception):
    """An outbox file cannot be written or read."""


class OutboxConflict(OutboxError):
    """A different report from the same signer for the same period is already in the outbox."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    sla: str
    path: Path
    signed: SignedReport

    @property
    def period_id(self) -> int:
        return self.signed.report.period_id


def default_outbox_dir(config: Config, environ: Mapping[str, str] | None = None) -> Path:
    """``<directory of the state file>/outbox``."""
    return config.state.resolved_path(environ).parent / "outbox"


def outbox_dir(config: Config, environ: Mapping[str, str] | None = None) -> Path:
    """``oracle.outbox`` when set, else :func:`default_outbox_dir`."""
    if config.oracle is not None and config.oracle.outbox:
        return Path(config.oracle.outbox).expanduser()
    return default_outbox_dir(config, environ)


def domain_outbox_dir(config: Config, environ: Mapping[str, str] | None = None) -> Path:
    """The daemon's outbox for its EIP-712 domain: ``<outbox>/<chainId>-<contract>``.

    One directory per chain id and contract (address in lower case), so that a daemon
    pointed at a new contract or chain neither serves the old contract's reports as
    current nor refuses the new contract's (OutboxConflict with an old file).
    """
    assert config.oracle is not None
    return outbox_dir(config, environ) / (
        f"{int(config.oracle.chain_id)}-{config.oracle.contract.lower()}"
    )


def _check_sla(sla: str) -> str:
    if not _SLA_RE.fullmatch(sla):
        raise OutboxError(f"invalid SLA id {sla!r} for an outbox directory")
    return sla


def _same_except_issued_at(a: SignedReport, b: SignedReport) -> bool:
    return (
        a.report.replace(issued_at=0) == b.report.replace(issued_at=0)
        and a.chain_id == b.chain_id
        and a.contract == b.contract
        and a.signer == b.signer
    )


class Outbox:
    """Signed report files under one directory. Thread-safe; blocking (call it from a thread
    or accept a few ms of file I/O on the loop)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._cache: dict[Path, tuple[int, int, SignedReport]] = {}
        self._lock = threading.Lock()

    # -- paths --------------------------------------------------------------------------
    def path_for(self, sla: str, period_id: int, signer: str) -> Path:
        """File of ``signer``'s report for contract period ``period_id`` of ``sla``."""
        return self.root / _check_sla(sla) / f"{int(period_id)}-{to_checksum_address(signer)}.json"

    # -- writing ------------------------------------------------------------------------
    def write(self, sla: str, signed: SignedReport) -> tuple[SignedReport, bool]:
        """Store ``signed`` for the slamon SLA ``sla``.

        Returns ``(report now in the outbox, written)``: ``written`` is False when an
        identical report, or the same report with another ``issuedAt``, was already there
        (then the existing one is returned). Raises :class:`OutboxConflict` when a different
        report is there, :class:`OutboxError` on I/O errors.
        """
        signed.verify()
        path = self.path_for(sla, signed.report.period_id, signed.signer)
        data = (signed.to_json() + "\n").encode("ascii")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"cannot create outbox directory {path.parent}: {exc}") from None
        if path.exists():
            return self._existing(path, signed), False
        try:
            if not write_new_file(path, data, 0o644):
                return self._existing(path, signed), False  # someone wrote it meanwhile
        except OSError as exc:
            raise OutboxError(f"cannot write outbox file {path}: {exc}") from None
        return signed, True

    def _existing(self, path: Path, signed: SignedReport) -> SignedReport:
        try:
            existing = self._load(path)
        except OutboxError as exc:
            raise OutboxConflict(
                f"{path} exists and is not a valid signed report ({exc}): "
                "move it away after checking it"
            ) from None
        if existing == signed or _same_except_issued_at(existing, signed):
            return existing
        raise OutboxConflict(
            f"{path} already holds a different report from {signed.signer} for this period "
            f"(existing digest 0x{existing.digest().hex()}, new 0x{signed.digest().hex()}): "
            "the same signer must never attest two results for one period"
        )

    # -- reading ------------------------------------------------------------------------
    def _load(self, path: Path) -> SignedReport:
        try:
            st = path.stat()
        except OSError as exc:
            raise OutboxError(f"cannot read {path}: {exc.strerror or exc}") from None
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
            return cached[2]
        try:
            text = path.read_text(encoding="utf-8")
            signed = SignedReport.from_json(text)
        except OSError as exc:
            raise OutboxError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise OutboxError(f"{path} is not a valid signed report: {exc}") from None
        m = _FILE_RE.fullmatch(path.name)
        if m is None or int(m.group(1)) != signed.report.period_id or (
            to_checksum_address(m.group(2)) != signed.signer
        ):
            raise OutboxError(f"{path}: file name does not match the report inside")
        with self._lock:
            self._cache[path] = (st.st_size, st.st_mtime_ns, signed)
        return signed

    def read(self, sla: str, period_id: int, signer: str) -> SignedReport | None:
        """One report, or None when absent. Raises :class:`OutboxError` if it is invalid."""
        path = self.path_for(sla, period_id, signer)
        if not path.exists():
            return None
        return self._load(path)

    def slas(self) -> list[str]:
        """SLA ids that have a directory in the outbox."""
        try:
            return sorted(
                p.name for p in self.root.iterdir() if p.is_dir() and _SLA_RE.fullmatch(p.name)
            )
        except FileNotFoundError:
            return []

    def _files(self, sla: str) -> Iterator[tuple[int, Path]]:
        directory = self.root / _check_sla(sla)
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            m = _FILE_RE.fullmatch(name)
            if m is not None:
                yield int(m.group(1)), directory / name

    def entries(
        self,
        sla: str | None = None,
        *,
        since_period: int | None = None,
        period: int | None = None,
        errors: list[str] | None = None,
    ) -> list[OutboxEntry]:
        """Valid reports, sorted by (sla, period, signer).

        ``since_period``: contract period id >= N; ``period``: exactly N. Invalid files are
        skipped; their messages are appended to ``errors`` when given.
        """
        out: list[OutboxEntry] = []
        for s in [sla] if sla is not None else self.slas():
            for pid, path in self._files(s):
                if since_period is not None and pid < since_period:
                    continue
                if period is not None and pid != period:
                    continue
                try:
                    signed = self._load(path)
                except OutboxError as exc:
                    if errors is not None:
                        errors.append(str(exc))
                    continue
                out.append(OutboxEntry(s, path, signed))
        out.sort(key=lambda e: (e.sla, e.period_id, e.signed.signer))
        return out


