"""The oracle: closed SLA periods -> EIP-712 signed reports -> chain (publisher) or outbox.

- :mod:`slamon.oracle.keys`: the signing key (encrypted keystore + password file, or a dev
  env var), :class:`Signer`, ``slamon keys new``.
- :mod:`slamon.oracle.builder`: :func:`build_report` from a closed period.
- :mod:`slamon.oracle.outbox`: signed report files for relayers; :mod:`slamon.oracle.http`
  serves them at ``/api/v1/attestations``.
- :mod:`slamon.oracle.commands`: ``slamon keys new`` and ``slamon report verify``;
  :mod:`slamon.oracle.contract_commands`: ``slamon contract deploy`` and ``register``.

See docs/oracle.md.
"""

from slamon.oracle.builder import ReportBuildError, build_report, period_base_for
from slamon.oracle.keys import KeyLoadError, Signer, load_signer, new_keystore
from slamon.oracle.outbox import (
    Outbox,
    OutboxConflict,
    OutboxEntry,
    OutboxError,
    default_outbox_dir,
    outbox_dir,
)

__all__ = [
    "KeyLoadError",
    "Outbox",
    "OutboxConflict",
    "OutboxEntry",
    "OutboxError",
    "ReportBuildError",
    "Signer",
    "build_report",
    "default_outbox_dir",
    "load_signer",
    "new_keystore",
    "outbox_dir",
    "period_base_for",
]
