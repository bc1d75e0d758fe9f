"""Local demo targets with a scripted outage, so `slamon demo` shows real numbers offline.

Behaviour is a pure function of time (`phase_at`), repeating every CYCLE
seconds: the shop goes down (503), then the API turns slow, then the login page
serves a 200 "maintenance page" (wrong body: a port check would call it up).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

CYCLE = 240.0
HOST = "127.0.0.1"
PORTS = {"shop": 18081, "api": 18082, "login": 18083, "db": 18084}


@dataclass(frozen=True)
class Phase:
    shop_down: bool
    api_slow: bool
    login_maintenance: bool


def phase_at(t: float, start: float) -> Phase:
    s = (t - start) % CYCLE
    return Phase(
        shop_down=60 <= s < 110,
        api_slow=140 <= s < 170,
        login_maintenance=190 <= s < 215,
    )


class DemoTargets:
    def __init__(self, host: str = HOST, ports: dict[str, int] | None = None) -> None:
        self.host = host
        self.ports = dict(ports or PORTS)
        self.start_time = time.time()
        self._runners: list[web.AppRunner] = []
        self._tcp: asyncio.Server | None = None

    def phase(self) -> Phase:
        return phase_at(time.time(), self.start_time)

    async def _shop(self, _r: web.Request) -> web.Response:
        if self.phase().shop_down:
            return web.Response(status=503, text="Service Unavailable\n")
        return web.Response(text="<html><body><h1>Demo Shop</h1>In stock</body></html>",
                            content_type="text/html")

    async def _health(self, _r: web.Request) -> web.Response:
        if self.phase().api_slow:
            await asyncio.sleep(0.6)
        return web.json_response({"status": "ok", "db": {"connected": True}})

    async def _login(self, _r: web.Request) -> web.Response:
        if self.phase().login_maintenance:
            return web.Response(text="<h1>Down for maintenance</h1>", content_type="text/html")
        return web.Response(text='<form id="login"><input name="user"></form>',
                            content_type="text/html")

    async def _db(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"+OK demo-db ready\r\n")
            await writer.drain()
        finally:
            writer.close()

    async def start(self) -> None:
        sites = (("shop", "/", self._shop), ("api", "/health", self._health),
                 ("login", "/login", self._login))
        for name, path, handler in sites:
            app = web.Application()
            app.router.add_get(path, handler)
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, self.host, self.ports[name], reuse_address=True).start()
            self._runners.append(runner)
        self._tcp = await asyncio.start_server(self._db, self.host, self.ports["db"],
                                               reuse_address=True)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
            self._tcp = None


def start_dev_chain(config: Any, sla_ids: list[str]) -> tuple[Any, Any, dict[str, int]]:
    """Start anvil, deploy the contract and register the demo SLAs (blocking: run in a thread).

    Returns (anvil process, oracle config, schedule starts). anvil's public test
    accounts play the roles: #0 provider, #1 this oracle, #2 the team, #3/#4
    customers. Blocks come every second, as on a real chain.
    """
    from eth_account import Account

    from slamon.chain.tx import deploy_contract, register_sla, sla_params
    from slamon.config.oracle import OracleConfig
    from slamon.dev.devchain import ANVIL_CHAIN_ID, AnvilProcess

    node = AnvilProcess.launch("--block-time", "1")
    try:
        w3 = node.web3()
        keys = node.keys
        provider, oracle, team, cust1, cust2 = (Account.from_key(k) for k in keys[:5])
        address = deploy_contract(w3, provider.key.to_0x_hex())
        starts: dict[str, int] = {}
        for sla_id in sla_ids:
            params, start = sla_params(
                config, sla_id, signers=[oracle.address], quorum=1, single_oracle=True,
                team=team.address,
                beneficiaries=[cust1.address, cust2.address], weights=[1, 1],
                now=time.time(),
            )
            register_sla(w3, address, keys[0], params, fund_wei=10 * 10**18)
            starts[sla_id] = start
        os.environ[DEMO_KEY_ENV] = keys[1]
        oracle_cfg = OracleConfig.model_validate({
            "mode": "chain",
            "key": {"dev_key_env": DEMO_KEY_ENV},
            "chain_id": ANVIL_CHAIN_ID,
            "contract": address,
            "rpc_url": node.url,
            "confirmations": 1,
            "provider": provider.address,
            "slas": sla_ids,
            "schedule_starts": starts,
        })
        return node, oracle_cfg, starts
    except BaseException:
        node.stop()
        raise


#: env var the demo puts anvil's public test key #1 in (a dev chain key, not a secret)
DEMO_KEY_ENV = "SLAMON_DEMO_ORACLE_KEY"
