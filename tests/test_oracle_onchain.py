"""The daemon checks the on-chain SLA against its config before it signs (real anvil).

And the policy digest commits to each target's definition and the maintenance windows.
"""

from __future__ import annotations

import os
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from eth_account import Account
from structlog.testing import capture_logs

from slamon.chain.tx import deploy_contract, register_sla, sla_params
from slamon.config.loader import load_config
from slamon.config.root import Config
from slamon.oracle.onchain import OracleStartError
from slamon.oracle.service import OracleService
from slamon.sla.policy import policy_digest_for
from slamon.store.sqlite import StateStore
from tests.chain_helpers import AnvilNode

pytestmark = pytest.mark.timeout(60)

KEY_ENV = "SLAMON_TEST_ONCHAIN_KEY"


def write_config(path: Path, *, url: str = "http://127.0.0.1:9/ok", contract: str,
                 rpc_url: str, provider: str, maintenance: str = "",
                 description: str = "", port: int = 0, oracle_extra: str = "") -> Config:
    path.write_text(textwrap.dedent(f"""
        server: {{listen: "127.0.0.1:{port}"}}
        status_page: {{enabled: true}}
        state: {{path: "{path.parent / 'state.sqlite3'}"}}
        targets:
          - {{id: web, kind: http, interval: 1s, timeout: 500ms, http: {{url: "{url}"}}}}
        slos:
          - {{id: web-slo, targets: [web], objective: 0.9, window: 1h}}
        slas:
          - id: gold
            slo: web-slo
            period: {{kind: fixed, length: 1m, anchor: 0}}
            min_valid_samples: 5
        oracle:
          mode: chain
          key: {{dev_key_env: {KEY_ENV}}}
          chain_id: 31337
          contract: "{contract}"
          rpc_url: "{rpc_url}"
          provider: "{provider}"
    """) + oracle_extra + maintenance.replace("DESC", description))
    return load_config(path)


MAINTENANCE = textwrap.dedent("""
    maintenance:
      - kind: once
        once: {start: "2030-01-01T00:00:00Z", end: "2030-01-01T01:00:00Z"}
        description: "DESC"
""")


@pytest.fixture(autouse=True)
def _captured_logs() -> Iterator[None]:
    """Log calls go to a list, not to a stream that an earlier test's capture closed."""
    with capture_logs():
        yield


@pytest.fixture
def node() -> Iterator[AnvilNode]:
    with AnvilNode.start() as n:
        yield n


def _deployed(node: AnvilNode, path: Path, **config: Any) -> tuple[str, str, Config]:
    """A fresh contract (deployed by key 0, the provider) and a config at `path` that
    names it: (contract address, provider address, config)."""
    provider = Account.from_key(node.keys[0]).address
    address = deploy_contract(node.web3(), node.keys[0])
    return address, provider, write_config(path, contract=address, rpc_url=node.url,
                                           provider=provider, **config)


def _register(node: AnvilNode, config: Config, signers: list[str],
              single_oracle: bool = False) -> None:
    w3 = node.web3()
    assert config.oracle is not None
    params, _ = sla_params(config, "gold", signers=signers, quorum=1, team=signers[0],
                           beneficiaries=[signers[0]], weights=[1], now=time.time(),
                           single_oracle=single_oracle)
    register_sla(w3, config.oracle.contract, node.keys[0], params)


async def _start(config: Config, store: StateStore, key: str,
                 monkeypatch: pytest.MonkeyPatch) -> OracleService:
    monkeypatch.setenv(KEY_ENV, key)
    svc = OracleService(config, store, structlog.get_logger())
    await svc.start()
    return svc


async def test_matching_sla_starts_and_mismatches_stop_start(
    node: AnvilNode, tmp_path: Path, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, provider, good = _deployed(node, tmp_path / "a.yaml")
    signer_key = node.keys[7]
    signer = Account.from_key(signer_key).address
    _register(node, good, [signer])

    svc = await _start(good, store, signer_key, monkeypatch)
    try:
        assert svc.mismatches == {"gold": []}
        assert svc.onchain["gold"].single_oracle is False
    finally:
        await svc.stop()

    # the key is not a signer: a clear error at start, naming the field and both sides
    other_key = node.keys[8]
    with capture_logs() as logs, pytest.raises(OracleStartError) as err:
        await _start(good, store, other_key, monkeypatch)
    assert "not in the on-chain signer set" in str(err.value)
    assert signer in str(err.value)
    assert other_key[2:] not in str(err.value)
    lines = [e for e in logs if e["event"] == "oracle_sla_mismatch"]
    assert [(e["sla"], e["field"]) for e in lines] == [("gold", "signer")]
    assert all(other_key[2:] not in str(e) for e in logs)

    # another URL for the target: another policy digest than the registered one
    moved = write_config(tmp_path / "b.yaml", url="http://127.0.0.1:9/elsewhere",
                         contract=address, rpc_url=node.url, provider=provider)
    with capture_logs() as logs, pytest.raises(OracleStartError) as err:
        await _start(moved, store, signer_key, monkeypatch)
    assert "policy_digest" in str(err.value)
    [line] = [e for e in logs if e["event"] == "oracle_sla_mismatch"]
    assert line["field"] == "policy_digest"
    assert line["onchain"] == "0x" + policy_digest_for(
        good.slas[0], good.slos[0], good).hex()
    assert line["config"] == "0x" + policy_digest_for(
        moved.slas[0], moved.slos[0], moved).hex()

    # the config names the quorum it agreed to: the registered one (1) differs
    strict = write_config(tmp_path / "c.yaml", contract=address, rpc_url=node.url,
                          provider=provider, oracle_extra="  quorum: 3\n")
    with capture_logs() as logs, pytest.raises(OracleStartError) as err:
        await _start(strict, store, signer_key, monkeypatch)
    [line] = [e for e in logs if e["event"] == "oracle_sla_mismatch"]
    assert (line["field"], line["onchain"], line["config"]) == ("quorum", "1", "3")
    agreed = write_config(tmp_path / "d.yaml", contract=address, rpc_url=node.url,
                          provider=provider, oracle_extra="  quorum: 1\n")
    svc = await _start(agreed, store, signer_key, monkeypatch)
    try:
        assert svc.mismatches == {"gold": []}
    finally:
        await svc.stop()


async def test_contract_must_name_periods_by_slamons_ids(
    node: AnvilNode, tmp_path: Path, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An SLA registered with another firstPeriodId would number its periods differently
    from the daemon's logs, API and status page: refused, naming both ids."""
    _address, _provider, config = _deployed(node, tmp_path / "a.yaml")
    signer_key = node.keys[7]
    signer = Account.from_key(signer_key).address
    assert config.oracle is not None
    params, _ = sla_params(config, "gold", signers=[signer], quorum=1, team=signer,
                           beneficiaries=[signer], weights=[1], now=time.time())
    first = params[-1]
    register_sla(node.web3(), config.oracle.contract, node.keys[0], (*params[:-1], first + 5))
    with capture_logs() as logs, pytest.raises(OracleStartError) as err:
        await _start(config, store, signer_key, monkeypatch)
    assert "first_period_id" in str(err.value)
    [line] = [e for e in logs if e["event"] == "oracle_sla_mismatch"]
    assert (line["onchain"], line["config"]) == (str(first + 5), str(first))


async def test_unreachable_chain_defers_the_check_to_the_first_signature(
    node: AnvilNode, tmp_path: Path, store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, provider, good = _deployed(node, tmp_path / "a.yaml")
    signer_key = node.keys[7]
    signer = Account.from_key(signer_key).address
    _register(node, good, [signer])
    # the daemon is configured with another URL than the registered policy, and starts
    # while the chain is unreachable: start succeeds, no signature, mismatch recorded
    dead = write_config(tmp_path / "b.yaml", url="http://127.0.0.1:9/elsewhere",
                        contract=address, rpc_url="http://127.0.0.1:9", provider=provider)
    svc = await _start(dead, store, signer_key, monkeypatch)
    try:
        assert svc.mismatches == {}
        # chain down: nothing signed
        assert await svc._period_base(*svc._judged_by(dead.slas[0], None)) is None
    finally:
        await svc.stop()
    # the chain is back: the first signature checks first, and refuses
    assert dead.oracle is not None
    back = dead.model_copy(update={"oracle": dead.oracle.model_copy(
        update={"rpc_url": node.url})})
    svc = OracleService(back, store, structlog.get_logger())
    monkeypatch.setenv(KEY_ENV, signer_key)
    svc.load_key()
    from slamon.oracle.publisher import Publisher

    assert svc.signer is not None
    assert back.oracle is not None
    svc.publisher = Publisher(back.oracle, svc.signer, store, structlog.get_logger())
    try:
        with capture_logs() as logs:
            assert await svc._period_base(*svc._judged_by(back.slas[0], None)) is None
        assert [m.field for m in svc.mismatches["gold"]] == ["policy_digest"]
        assert [e["field"] for e in logs if e["event"] == "oracle_sla_mismatch"] == [
            "policy_digest"]
        text = "".join(_metric_lines(svc))
        assert 'slamon_oracle_sla_mismatch{field="policy_digest",sla="gold"} 1.0' in text
        assert await svc.backfill() == 0  # nothing signed while it differs
    finally:
        await svc.publisher.chain.close()


def _metric_lines(svc: OracleService) -> list[str]:
    from prometheus_client import CollectorRegistry, generate_latest

    class _C:
        def collect(self):  # type: ignore[no-untyped-def]
            return svc.metrics()

    reg = CollectorRegistry()
    reg.register(_C())  # type: ignore[arg-type]
    return [generate_latest(reg).decode()]


def test_run_exits_nonzero_without_traceback_when_key_is_not_a_signer(
    node: AnvilNode, tmp_path: Path
) -> None:
    import subprocess

    _address, _provider, config = _deployed(node, tmp_path / "a.yaml")
    _register(node, config, [Account.from_key(node.keys[7]).address])
    proc = subprocess.run(
        [sys.executable, "-m", "slamon", "run", "-c", str(tmp_path / "a.yaml")],
        env={**os.environ, KEY_ENV: node.keys[8]}, capture_output=True, timeout=40,
    )
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "Traceback" not in err
    assert "not in the on-chain signer set" in err
    assert node.keys[8][2:] not in err + proc.stdout.decode()


@pytest.mark.parametrize("change,moves", [
    ({"url": "http://127.0.0.1:9/other"}, True),
    ({"maintenance": MAINTENANCE}, True),
    ({"maintenance": MAINTENANCE.replace("01:00:00Z", "02:00:00Z")}, True),
    ({"maintenance": MAINTENANCE, "description": "new wording"}, False),
])
def test_policy_digest_covers_target_definitions_and_maintenance(
    tmp_path: Path, change: dict[str, str], moves: bool
) -> None:
    addr = "0x" + "11" * 20
    base_kw: dict[str, str] = {"contract": addr, "rpc_url": "http://127.0.0.1:9",
                               "provider": addr}
    if "description" in change:  # compare against the same window, other wording
        base_kw["maintenance"] = MAINTENANCE
    base = write_config(tmp_path / "base.yaml", **base_kw)
    changed = write_config(tmp_path / "changed.yaml", **{**base_kw, **change})
    d1 = policy_digest_for(base.slas[0], base.slos[0], base)
    d2 = policy_digest_for(changed.slas[0], changed.slos[0], changed)
    assert (d1 != d2) is moves


async def test_single_oracle_sla_is_shown_on_the_api_and_status_page(
    node: AnvilNode, tmp_path: Path
) -> None:
    import asyncio
    import signal

    import aiohttp

    from tests.misbehaving import free_port

    signer = Account.from_key(node.keys[7]).address
    port = free_port()
    _address, _provider, config = _deployed(node, tmp_path / "a.yaml", port=port)
    _register(node, config, [signer], single_oracle=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "slamon", "run", "-c", str(tmp_path / "a.yaml"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, KEY_ENV: node.keys[7]},
    )
    try:
        async with aiohttp.ClientSession() as session, asyncio.timeout(30):
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/api/v1/slas/gold") as r:
                        doc = await r.json()
                    # the server answers before the oracle has read the chain
                    if r.status == 200 and doc["onchain"] is not None:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
            assert doc["onchain"]["single_oracle"] is True
            assert doc["onchain"]["quorum"] == 1
            assert doc["onchain"]["signers"] == [signer]
            assert doc["onchain"]["mismatches"] == []
            async with session.get(f"http://127.0.0.1:{port}/status") as r:
                page = await r.text()
            assert "single oracle: one signer, no fault tolerance" in page
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0, err.decode()[-2000:]


def test_outbox_is_one_directory_per_chain_and_contract(tmp_path: Path) -> None:
    from slamon.oracle.outbox import domain_outbox_dir

    a, b = "0x" + "11" * 20, "0x" + "22" * 20
    cfg = write_config(tmp_path / "a.yaml", contract=a, rpc_url="http://127.0.0.1:9",
                       provider=a)
    other = write_config(tmp_path / "b.yaml", contract=b, rpc_url="http://127.0.0.1:9",
                         provider=a)
    assert cfg.oracle is not None
    chain1 = cfg.model_copy(update={"oracle": cfg.oracle.model_copy(update={"chain_id": 1})})
    dirs = {domain_outbox_dir(c) for c in (cfg, other, chain1)}
    assert len(dirs) == 3
    assert domain_outbox_dir(cfg).name == f"31337-{a}"


def test_target_document_holds_no_secret_and_no_local_path() -> None:
    """The policy document is publishable and shared by independent oracles: a
    heartbeat token never enters it, header values and the body only as a hash, and
    a CA file counts as set or not, whatever its path on one machine."""
    from slamon.config.targets import Target
    from slamon.sla.policy import canonical_json, target_document

    beat = Target.model_validate({"id": "cron", "kind": "heartbeat", "interval": 60,
                                  "heartbeat": {"token": "s3cr3t-token-value-123456"}})
    assert b"s3cr3t" not in canonical_json(target_document(beat))
    http = {"id": "w", "kind": "http", "interval": 10, "timeout": 2,
            "http": {"url": "https://127.0.0.1/", "headers": {"Authorization": "Bearer xyz"},
                     "ca_file": "/etc/ssl/a.pem"}}
    doc = canonical_json(target_document(Target.model_validate(http)))
    assert b"xyz" not in doc and b"Authorization" in doc
    other = {**http, "http": {**http["http"], "ca_file": "/srv/b.pem"}}  # type: ignore[dict-item]
    assert canonical_json(target_document(Target.model_validate(other))) == doc
    none = {**http, "http": {**http["http"], "ca_file": None}}  # type: ignore[dict-item]
    assert canonical_json(target_document(Target.model_validate(none))) != doc


async def test_a_period_open_during_an_edit_is_signed_and_accepted_under_its_policy(
    node: AnvilNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract pins the registered digest. An edit of the config while a period is
    open (here the target's URL: another digest) reaches the periods after it: the open
    one closes under the policy it began with, the oracle signs it and the contract
    takes the report. The next period, judged by the edit, is not signed: the chain
    registers another policy."""
    from slamon.app.daemon import Daemon
    from slamon.chain.artefacts import sla_compensation
    from slamon.probers.base import ProbeResult
    from slamon.sla.periods import period_bounds, period_index

    path = tmp_path / "slamon.yaml"
    address, provider, good = _deployed(node, path)
    signer_key = node.keys[7]
    signer = Account.from_key(signer_key).address
    _register(node, good, [signer])
    monkeypatch.setenv(KEY_ENV, signer_key)
    registered = policy_digest_for(good.slas[0], good.slos[0], good)
    daemon = Daemon(load_config(path), config_path=path, loader=load_config)
    await daemon._open_state()
    oracle, tracker = daemon.parts.oracle, daemon.parts.tracker
    assert oracle is not None and tracker is not None and daemon.store is not None
    await oracle.start()
    w3 = node.web3()
    contract = w3.eth.contract(address=address, abi=sla_compensation().abi)
    try:
        sla = good.slas[0]
        onchain_id = oracle._onchain_id(sla)
        n = period_index(sla.period, time.time())
        assert n >= oracle.onchain["gold"].first_period_id  # a period the contract takes

        def feed(period: int) -> None:
            begin = period_bounds(sla.period, period)[0]
            for i in range(10):
                daemon._on_result(daemon.config.target("web"), begin + 1 + 5 * i,
                                  ProbeResult(True, 0.01))

        feed(n)
        write_config(path, url="http://127.0.0.1:9/elsewhere", contract=address,
                     rpc_url=node.url, provider=provider)
        assert await daemon.reload()
        edited = policy_digest_for(daemon.config.slas[0], daemon.config.slos[0], daemon.config)
        assert edited != registered
        # an oracle starting now checks the chain against the open period's policy
        await oracle.check_at_start()
        feed(n + 1)
        await daemon._flush()
        for period in (n, n + 1):
            end = period_bounds(sla.period, period)[1]
            node.mine(w3, end + 1)  # the contract takes reports of finished periods
            with capture_logs() as logs:
                await tracker.close_due(now=end + tracker.slas["gold"].grace + 1)
            record = await daemon.store.get_period("gold", period)
            assert record is not None
            if period == n:
                assert record.policy_digest == registered
                await wait_for(lambda: contract.functions.hasReported(
                    onchain_id, n, signer).call())
            else:
                assert record.policy_digest == edited
                assert [m.field for m in oracle.mismatches["gold"]] == ["policy_digest"]
                assert [e["config"] for e in logs if e["event"] == "oracle_sla_mismatch"] == [
                    "0x" + edited.hex()]
                assert not contract.functions.hasReported(onchain_id, period, signer).call()
        # the open period is judged by the edit now, which the chain does not hold: an
        # oracle starting now holds the SLA (a warning, the mismatch exposed) and starts,
        # since the chain's digest judged period n here: the edit awaits registration
        with capture_logs() as logs:
            await oracle.check_at_start()
        [held] = [e for e in logs if e["event"] == "oracle_sla_edit_unregistered"]
        assert (held["sla"], held["onchain"], held["config"]) == (
            "gold", "0x" + registered.hex(), "0x" + edited.hex())
        assert held["log_level"] == "warning"
        assert [m.field for m in oracle.mismatches["gold"]] == ["policy_digest"]
        # a daemon on the same contract with no period judged by the registered digest
        # (a first deployment with another policy) is refused as before
        empty = StateStore(tmp_path / "other.db")
        await empty.open()
        fresh = OracleService(daemon.config, empty, structlog.get_logger())
        try:
            with pytest.raises(OracleStartError, match="policy_digest"):
                await fresh.start()
        finally:
            await fresh.stop()
            await empty.close()
    finally:
        await oracle.stop()
        await daemon.store.close()


async def wait_for(pred: Any, timeout: float = 20.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")
