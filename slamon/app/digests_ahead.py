"""Every SLA's policy digest worked out in a forked child while start-up reads the state.

At 10,000 SLAs the digests are ~0.6 s of Python (each SLA's canonical document, then
keccak256), and start-up needs them only once the state is read and the windows restored,
which takes as long again. A child forked just before (`slamon.util.forked`) holds the
very config object the tracker will run, so its digests describe exactly that config:
nothing is read again, no file can have changed in between. On the second core the two
halves overlap. A child that gives no digests leaves them to the tracker, as without one.
"""

from __future__ import annotations

from dataclasses import dataclass

from slamon.config.root import Config
from slamon.sla.policy import PolicyDigests, policy_digests
from slamon.util.forked import Forked, fork_call
from slamon.util.log import get_logger

#: below this many SLAs the digests take under ~60 ms, less than is worth a process
FROM_SLAS = 1000


def _digests(config: Config) -> dict[str, bytes]:
    # the digests alone: a PolicyDigests holds the config, which the parent has
    return dict(policy_digests(config).digests)


@dataclass
class DigestsAhead:
    """A child working out `config`'s policy digests: `take` them once, or `cancel`."""

    config: Config
    child: Forked[dict[str, bytes]]

    async def take(self) -> PolicyDigests | None:
        """The child's digests, or None (logged) when it gave none."""
        digests, why = await self.child.wait_async()
        if isinstance(digests, dict):
            return PolicyDigests(self.config, digests)
        get_logger().warning("policy_digests_child_failed", reason=why or "answer unreadable",
                             slas=len(self.config.slas))
        return None

    def cancel(self) -> None:
        """Stop the child unless its digests were taken (start-up failed, or they would
        spare nothing)."""
        self.child.cancel()


def start(config: Config, minimum: int | None = None) -> DigestsAhead | None:
    """Fork a child working out `config`'s digests; None under `minimum` SLAs (default
    FROM_SLAS) or when no child can be forked safely (logged)."""
    if len(config.slas) < (FROM_SLAS if minimum is None else minimum):
        return None
    child = fork_call(lambda: _digests(config))
    if isinstance(child, str):
        get_logger().info("policy_digests_in_process", reason=child, slas=len(config.slas))
        return None
    return DigestsAhead(config, child)
