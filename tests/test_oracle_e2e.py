"""End to end: daemons + loopback targets + anvil + the contract, with real periods.

One target is down for the whole period (its SLA is breached: beneficiaries are
compensated and one claims), the other is up (its SLA is met: the team reward
is credited and claimed). Four oracles with four keys report (n = 4, f = 1,
quorum 3): three slamon daemons, and a liar. The liar holds a valid signer key
but does not run slamon honestly (a Byzantine oracle runs what it likes): it
takes an honest report of each period, turns the down service into a perfect
one and the up one into a dead one, signs that and submits it first. A
misconfigured slamon cannot play the liar any more: the policy digest covers
the target definitions, so a daemon whose config differs from the registered
one refuses to sign (tests/test_oracle_onchain.py). The contract settles over
all four reports and the median follows the honest three. Periods are 1 minute,
so this test takes about that.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from web3 import Web3

from slamon.chain.artefacts import sla_compensation
from slamon.chain.eip712 import Report, SignedReport
from slamon.chain.tx import deploy_contract, register_sla, send_tx, sla_params
from slamon.config.loader import load_config
from slamon.sla.periods import period_bounds, period_index
from tests.chain_helpers import AnvilNode
from tests.misbehaving import MisbehavingHttpServer, free_port
from tests.promtext import parse_metrics, value

RATE = 10**12  # wei per ppm of shortfall
MET_REWARD = 10**15
POOL = 5 * 10**18


@pytest.fixture
async def targets() -> AsyncIterator[tuple[MisbehavingHttpServer, MisbehavingHttpServer]]:
    async with MisbehavingHttpServer() as down, MisbehavingHttpServer() as up:
        down.set_mode("down")
        yield down, up


def write_config(path: Path, down_url: str, up_url: str, port: int, extra: str = "",
                 state: str | None = None) -> None:
    state = state or f'path: "{path.parent / "state.sqlite3"}"'
    path.write_text(textwrap.dedent(f"""
        server: {{listen: "127.0.0.1:{port}"}}
        logging: {{level: info, format: json}}
        state: {{{state}, flush_interval: 200ms}}
        targets:
          - {{id: shop, kind: http, interval: 1s, timeout: 500ms, http: {{url: "{down_url}"}}}}
          - {{id: api, kind: http, interval: 1s, timeout: 500ms, http: {{url: "{up_url}"}}}}
        slos:
          - {{id: shop-slo, targets: [shop], objective: 0.9, window: 1h}}
          - {{id: api-slo, targets: [api], objective: 0.9, window: 1h}}
        slas:
          - id: shop-sla
            slo: shop-slo
            period: {{kind: fixed, length: 1m, anchor: 0}}
            grace: 2s
            evidence_resolution: 10s
            min_valid_samples: 5
          - id: api-sla
            slo: api-slo
            period: {{kind: fixed, length: 1m, anchor: 0}}
            grace: 2s
            evidence_resolution: 10s
            min_valid_samples: 5
    """) + extra)


async def wait_settled(w3: Web3, contract: Any, sla_ids: list[bytes], period: int,
                       limit: float) -> None:
    """Poll the chain until every SLA's `period` is settled (the daemon offers no event)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        states = [contract.functions.getPeriod(s, period).call() for s in sla_ids]
        if all(st[3] for st in states):
            return
        await asyncio.sleep(1.0)
    raise AssertionError(f"periods not settled within {limit}s: {states}")


async def lie(w3: Web3, contract: Any, key: str, port: int, slas: tuple[str, ...]
              ) -> list[Report]:
    """The Byzantine oracle: for each SLA, as soon as an honest daemon publishes its
    report, sign the opposite verdict (perfect where it was down, dead where it was
    up) with a valid signer key and submit it on-chain at once."""
    forged: list[Report] = []
    async with aiohttp.ClientSession() as session:
        for sla in slas:
            async with asyncio.timeout(150):  # the period (1 min) closes, then grace
                while True:
                    try:
                        async with session.get(f"http://127.0.0.1:{port}/api/v1/attestations",
                                               params={"sla": sla}) as resp:
                            entries = await resp.json()
                    except aiohttp.ClientConnectionError:  # the daemon is still starting
                        entries = []
                    if entries:
                        break
                    await asyncio.sleep(0.2)
            honest = Report.from_json_dict(entries[0]["report"])
            lie_sli = 1_000_000 if honest.breached else 0
            report = honest.replace(
                sli_ppm=lie_sli, good=honest.valid if lie_sli else 0,
                breached=lie_sli < honest.slo_ppm, issued_at=honest.issued_at + 1,
            )
            signed = SignedReport.sign(report, key, 31337, contract.address)
            send_tx(w3, key, contract.functions.submitReports(
                [report.as_tuple()], [signed.signature]))
            forged.append(report)
    return forged


async def test_quorum_settles_breach_and_met_periods_on_chain(
    targets: tuple[MisbehavingHttpServer, MisbehavingHttpServer], tmp_path: Path, pg_dsn: str
) -> None:
    """Four daemons (four keys, one lying) sign the same SLAs; the contract settles over
    all four reports and the liar does not move the verdict. The third honest daemon keeps
    its state (report journal included) in PostgreSQL, the others in SQLite files."""
    down, up = targets
    with AnvilNode.start("--block-time", "1") as node:  # blocks keep coming, as on a real chain
        w3 = node.web3()
        keys = node.keys
        team, ben1, ben2 = (Account.from_key(k) for k in keys[2:5])
        oracle_keys = [keys[1], keys[5], keys[6], keys[7]]
        signers = [Account.from_key(k).address for k in oracle_keys]
        address = deploy_contract(w3, keys[0])
        contract = w3.eth.contract(address=address, abi=sla_compensation().abi)
        ports = [free_port() for _ in range(3)]
        cfg_paths = []
        for i in range(3):  # oracle 3 is the liar, below
            home = tmp_path / f"oracle{i}"
            home.mkdir()
            cfg_paths.append(home / "slamon.yaml")
            # the honest daemons relay each other's reports: the first in the signer set
            # sends its own and the other two's in one transaction
            peers = ", ".join(f'"http://127.0.0.1:{p}"' for p in ports if p != ports[i])
            write_config(cfg_paths[i], down.url("/"), up.url("/ok"), ports[i], textwrap.dedent(f"""
                oracle:
                  mode: chain
                  key: {{dev_key_env: SLAMON_TEST_ORACLE_KEY}}
                  chain_id: 31337
                  contract: "{address}"
                  rpc_url: "{node.url}"
                  confirmations: 1
                  provider: "{Account.from_key(keys[0]).address}"
                  cosigners: [{peers}]
                  relay_wait: 5
            """) + (f'  outbox: "{home / "outbox"}"\n' if i == 2 else ""),
                state=f'backend: postgres, dsn: "{pg_dsn}"' if i == 2 else None)
        config = load_config(cfg_paths[0])
        # the first period on-chain = the first minute that starts after the daemons are up
        spec = config.slas[0].period
        first = period_index(spec, time.time() + 5) + 1
        start_at = period_bounds(spec, first)[0]
        sla_ids = []
        for sla_id in ("shop-sla", "api-sla"):
            params, start = sla_params(
                config, sla_id, signers=signers, quorum=3, team=team.address,
                beneficiaries=[ben1.address, ben2.address], weights=[1, 3], now=start_at,
            )
            assert start == start_at
            sla_ids.append(register_sla(w3, address, keys[0], params, fund_wei=POOL))

        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "slamon", "run", "-c", str(cfg_paths[i]),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "SLAMON_TEST_ORACLE_KEY": oracle_keys[i]},
            )
            for i in range(3)
        ]
        failure: BaseException | None = None
        metrics: list[str] = []
        try:
            forged = await lie(w3, contract, oracle_keys[3], ports[0], ("shop-sla", "api-sla"))
            assert len(forged) == 2
            await wait_settled(w3, contract, sla_ids, first,
                               limit=start_at + 60 + 45 - time.time())
            async with aiohttp.ClientSession() as session:
                # every daemon's report ends confirmed: counted, or late and harmless
                for port in ports:
                    async with asyncio.timeout(30):
                        while True:
                            async with session.get(f"http://127.0.0.1:{port}/metrics") as r:
                                text = await r.text()
                            samples = parse_metrics(text)
                            if (value(samples, "slamon_oracle_backlog") == 0
                                    and value(samples, "slamon_oracle_journal_entries",
                                              state="confirmed") == 2):
                                break
                            await asyncio.sleep(0.5)
                    metrics.append(text)
                async with session.get(
                    f"http://127.0.0.1:{ports[0]}/api/v1/slas/shop-sla/periods/{first}"
                ) as resp:
                    shop_period = await resp.json()
        except BaseException as exc:
            failure = exc
        finally:
            outputs = []
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                outputs.append(await asyncio.wait_for(proc.communicate(), 15))
        if failure is not None:
            logs = b"".join(o + e for o, e in outputs).decode()[-8000:]
            raise AssertionError(f"{failure}\n--- daemon log tail ---\n{logs}") from failure
        for proc, (out, err), key in zip(procs, outputs, oracle_keys[:3], strict=True):
            assert proc.returncode == 0, err.decode()[-2000:]
            assert b"Traceback" not in err
            assert key[2:].encode() not in out + err  # the key never reaches a log
        for text in metrics:  # no report failed anywhere (the series may be absent or 0)
            failed = value(parse_metrics(text), "slamon_oracle_journal_entries", state="failed")
            assert not failed, failed

        # one period id everywhere: the daemons' logs, the API and the contract name the
        # period by the same id
        logged = {(e["event"], e["period"]) for out, err in outputs
                  for e in map(json.loads, (line for line in (out + err).decode().splitlines()
                                            if line.startswith("{")))
                  if e.get("sla") == "shop-sla" and e.get("event") in (
                      "period_closed", "report_signed", "report_confirmed")}
        assert {ev for ev, p in logged if p == first} == {
            "period_closed", "report_signed", "report_confirmed"}, logged
        # (periods before the contract's first one close too, and are not reported)
        assert {p for ev, p in logged if ev != "period_closed"} == {first}, logged
        assert shop_period["period"] == first
        settled = contract.events.PeriodSettled().get_logs(
            from_block=0, argument_filters={"slaId": sla_ids[0]})
        assert [e.args.periodId for e in settled] == [first]
        # the first honest daemon relayed the other two's reports: one transaction for three
        for sla_id in sla_ids:
            accepted = contract.events.ReportAccepted().get_logs(
                from_block=0, argument_filters={"slaId": sla_id})
            honest = {e.transactionHash for e in accepted if e.args.signer in signers[:3]}
            assert len(honest) == 1, accepted
        shop = contract.functions.getPeriod(sla_ids[0], first).call()
        api = contract.functions.getPeriod(sla_ids[1], first).call()
        # settled over every report received: all four daemons counted, the liar included
        assert shop[7] == 4 and api[7] == 4
        # shop was down all period: SLI 0, breached; the daemon's own verdict agrees
        assert shop[3] and shop[4] and shop[5] == 0
        assert shop_period["result"]["sli_ppm"] == 0 and shop_period["result"]["breached"]
        roots = {
            "0x" + bytes(contract.functions.reportRoot(sla_ids[0], first, s).call()).hex()
            for s in signers
        }
        assert "0x" + bytes(shop[8]).hex() in roots
        # api was up: met, SLI 1.0
        assert api[3] and not api[4] and api[5] == 1_000_000

        # compensation computed on-chain: (objective - sli) * rate, split 1:3
        compensation = (900_000 - 0) * RATE
        owed1 = contract.functions.claimable(sla_ids[0], ben1.address).call()
        owed2 = contract.functions.claimable(sla_ids[0], ben2.address).call()
        assert abs(owed1 - compensation // 4) <= 1 and abs(owed2 - 3 * compensation // 4) <= 1
        before = w3.eth.get_balance(ben2.address)
        receipt = send_tx(w3, keys[4], contract.functions.claim(sla_ids[0]))
        fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert w3.eth.get_balance(ben2.address) == before + owed2 - fee
        # the met period pays nobody but the team
        assert contract.functions.claimable(sla_ids[1], ben1.address).call() == 0
        before = w3.eth.get_balance(team.address)
        receipt = send_tx(w3, keys[2], contract.functions.claimTeam(sla_ids[1]))
        fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert w3.eth.get_balance(team.address) == before + MET_REWARD - fee
