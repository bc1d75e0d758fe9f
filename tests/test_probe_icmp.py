"""ICMP prober: echo to 127.0.0.1 and ::1, and to loopbacks that drop echo requests.

Dropping happens in a network namespace of the test's own (`unshare -n`): there
the test may set `icmp_echo_ignore_all` and `ping_group_range` without touching
the host's. The namespace has only its loopback, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvloop

from slamon.config.loader import ConfigError, parse_config
from slamon.config.targets import Target
from slamon.probers import get_prober
from slamon.probers._net import ProbeError
from slamon.probers.base import FailureReason
from slamon.probers.icmp import _judge, probe
from tests.loops import both_loops  # noqa: F401  (every test here on both loops)

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')



def icmp_target(host: str, timeout: float = 1.0, **icmp: Any) -> Target:
    return Target.model_validate({"id": "t", "kind": "icmp", "interval": 10, "timeout": timeout,
                                  "icmp": {"host": host, **icmp}})


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def _can_open_icmp_socket() -> str | None:
    """None when this process may ping (ping socket or raw socket), else why not."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_RAW):
        try:
            socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
            return None
        except PermissionError:
            continue
    return "neither a ping socket (net.ipv4.ping_group_range) nor a raw socket (root) here"


needs_icmp = pytest.mark.skipif(_can_open_icmp_socket() is not None,
                                reason=str(_can_open_icmp_socket()))


@needs_icmp
async def test_ping_ipv4_loopback() -> None:
    r = await probe(icmp_target("127.0.0.1"), 1.0)
    assert r.ok, r
    assert set(r.phases) == {"setup", "rtt"}  # an IP: no resolve phase
    assert 0 < r.phases["rtt"] < 0.5
    assert r.facts == {"icmp_packets_sent": 1, "icmp_packets_received": 1}


@needs_icmp
@pytest.mark.skipif(not _ipv6_loopback(), reason="no ::1 on this host")
async def test_ping_ipv6_loopback_several_packets() -> None:
    r = await get_prober("icmp")(icmp_target("::1", count=3, packet_interval="20ms"), 1.0)
    assert r.ok, r
    assert r.facts == {"icmp_packets_sent": 3, "icmp_packets_received": 3}
    # the three requests went out 20 ms apart, and the probe ended with the last reply
    assert 0.04 <= r.duration < 0.5


@needs_icmp
async def test_ping_by_name() -> None:
    r = await probe(icmp_target("localhost", ip_family="ipv4"), 1.0)
    assert r.ok, r
    assert "resolve" in r.phases


async def test_unresolvable() -> None:
    r = await probe(icmp_target("no-such-host.invalid"), 1.0)
    assert r.reason is FailureReason.DNS, r
    r = await probe(icmp_target("127.0.0.1", ip_family="ipv6"), 1.0)
    assert r.reason is FailureReason.DNS and "not ipv6" in r.detail, r


def test_judging_loss() -> None:
    _judge(4, 4, None, 1.0, "")
    _judge(4, 1, None, 1.0, "")  # without max_packet_loss, one reply is enough
    _judge(4, 3, 0.25, 1.0, "")
    with pytest.raises(ProbeError) as info:
        _judge(4, 2, 0.25, 1.0, "")
    assert info.value.reason is FailureReason.PACKET_LOSS
    assert info.value.detail == "50% packet loss (2 of 4 answered), more than 25%"
    with pytest.raises(ProbeError) as info:
        _judge(2, 0, 0.5, 1.5, "destination unreachable")
    assert info.value.reason is FailureReason.TIMEOUT
    assert info.value.detail == "no echo reply to 2 packets in 1.5s: destination unreachable"


# ---------------------------------------------------------------- dropping, in a namespace

#: run in a fresh network namespace: lo up, the sysctls given, then the scenarios
NETNS_SCRIPT = r"""
import asyncio, json, socket, sys
import uvloop
from slamon.config.targets import Target
from slamon.probers import icmp

def sysctl(path, value):
    with open("/proc/sys/" + path, "w") as f:
        f.write(value)

loop_name, settings, scenarios = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
for path, value in settings.items():
    sysctl(path, value)

async def drop_after(replies):
    # watch the namespace's ICMP on a raw socket of our own; after `replies` IPv4
    # echo replies, make the kernel ignore echo requests from then on
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as watch:
        watch.setblocking(False)
        seen = 0
        while seen < replies:
            packet = await loop.sock_recv(watch, 2048)
            if packet[(packet[0] & 0x0F) * 4] == 0:  # ICMP type after the IP header
                seen += 1
        sysctl("net/ipv4/icmp_echo_ignore_all", "1")

async def main():
    out = []
    for sc in scenarios:
        t = Target.model_validate({"id": "t", "kind": "icmp", "interval": 10,
                                   "timeout": sc["timeout"], "icmp": sc["icmp"]})
        for path, value in sc.get("before", {}).items():
            sysctl(path, value)
        watcher = None
        if "drop_after" in sc:
            watcher = asyncio.create_task(drop_after(sc["drop_after"]))
            await asyncio.sleep(0)  # let it open its socket before the first request
        r = await icmp.probe(t, sc["timeout"])
        if watcher is not None:
            watcher.cancel()
        out.append({"ok": r.ok, "reason": r.reason and r.reason.value, "detail": r.detail,
                    "duration": r.duration, "facts": r.facts, "phases": r.phases,
                    "privileged": {str(k): v for k, v in icmp._privileged.items()}})
    print(json.dumps(out))

(uvloop.run if loop_name == "uvloop" else asyncio.run)(main())
"""


def in_netns(loop: str, settings: dict[str, str], scenarios: list[dict[str, Any]]
             ) -> list[dict[str, Any]]:
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        pytest.skip("unshare (util-linux) or ip (iproute2) is not installed")
    settings = {"net/ipv4/ping_group_range": "1 0", **settings}
    script = "import subprocess; subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)\n"
    res = subprocess.run(
        [unshare, "-n", sys.executable, "-c", script + NETNS_SCRIPT, loop,
         json.dumps(settings), json.dumps(scenarios)],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if res.returncode != 0 and "unshare failed" in res.stderr:
        pytest.skip(f"cannot make a network namespace here: {res.stderr.strip()}")
    assert res.returncode == 0, res.stderr
    out: list[dict[str, Any]] = json.loads(res.stdout)
    return out


def loop_name(policy: asyncio.AbstractEventLoopPolicy) -> str:
    return "uvloop" if isinstance(policy, uvloop.EventLoopPolicy) else "asyncio"


@pytest.fixture
def loop_kind(event_loop_policy: asyncio.AbstractEventLoopPolicy) -> str:
    return loop_name(event_loop_policy)


def test_dropped_echo_is_a_timeout(loop_kind: str) -> None:
    drop = {"net/ipv4/icmp_echo_ignore_all": "1", "net/ipv6/icmp/echo_ignore_all": "1"}
    v4, v6 = in_netns(loop_kind, drop, [
        {"timeout": 0.5, "icmp": {"host": "127.0.0.1", "count": 2, "packet_interval": "50ms"}},
        {"timeout": 0.5, "icmp": {"host": "::1"}},
    ])
    assert v4["reason"] == "timeout" and v4["detail"] == "no echo reply to 2 packets in 500ms", v4
    assert v4["facts"] == {"icmp_packets_sent": 2, "icmp_packets_received": 0}
    assert "rtt" not in v4["phases"]
    assert 0.5 <= v4["duration"] < 1.0
    assert v6["reason"] == "timeout", v6
    # ping sockets are not allowed to anyone there (ping_group_range "1 0"): raw sockets
    assert v4["privileged"] == {str(int(socket.AF_INET)): True}


def test_packet_loss_over_several_packets(loop_kind: str) -> None:
    """Echo answered for the first two of four requests, then dropped: the kernel's
    switch is flipped as soon as the second reply is seen, 300 ms before the third
    request leaves."""
    icmp = {"host": "127.0.0.1", "count": 4, "packet_interval": "300ms"}
    strict, lenient = in_netns(loop_kind, {}, [
        {"timeout": 1.5, "icmp": {**icmp, "max_packet_loss": 0.25}, "drop_after": 2},
        {"timeout": 1.5, "icmp": {**icmp, "max_packet_loss": 0.5},
         "before": {"net/ipv4/icmp_echo_ignore_all": "0"}, "drop_after": 2},
    ])
    assert strict["reason"] == "packet_loss", strict
    assert strict["detail"] == "50% packet loss (2 of 4 answered), more than 25%"
    assert strict["facts"] == {"icmp_packets_sent": 4, "icmp_packets_received": 2}
    assert strict["phases"]["rtt"] > 0
    assert lenient["ok"], lenient


def test_unprivileged_ping_socket_where_allowed(loop_kind: str) -> None:
    allow = {"net/ipv4/ping_group_range": "0 2147483647"}
    v4, v6 = in_netns(loop_kind, allow, [
        {"timeout": 1.0, "icmp": {"host": "127.0.0.1", "count": 2, "packet_interval": "20ms"}},
        {"timeout": 1.0, "icmp": {"host": "::1"}},
    ])
    assert v4["ok"] and v6["ok"], (v4, v6)
    assert v6["privileged"] == {str(int(socket.AF_INET)): False,
                                str(int(socket.AF_INET6)): False}


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("icmp", "timeout", "where", "words"),
    [
        ({"host": ""}, "1s", "icmp.host", "must not be empty"),
        ({"host": "[::1]"}, "1s", "icmp.host", "without brackets"),
        ({"host": "a", "count": 0}, "1s", "icmp.count", "greater than or equal to 1"),
        ({"host": "a", "max_packet_loss": 1}, "1s", "icmp.max_packet_loss", "less than 1"),
        ({"host": "a", "packet_interval": "1ms"}, "1s", "icmp.packet_interval", "10ms"),
        ({"host": "a", "count": 6}, "1s", "icmp.count", "longer than the timeout (1s)"),
    ],
)
def test_config_errors_name_the_key(icmp: dict[str, Any], timeout: str, where: str,
                                    words: str) -> None:
    text = json.dumps({"targets": [{"id": "t", "kind": "icmp", "timeout": timeout,
                                    "icmp": icmp}]})
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert any(e.startswith(f"targets[0].{where}: ") and words in e
               for e in info.value.errors), info.value.errors


def test_docs_example_is_valid() -> None:
    import re

    doc = (REPO / "docs" / "config.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "kind: icmp" in b]
    assert len(blocks) == 1
    config = parse_config(blocks[0])
    assert {t.kind for t in config.targets} == {"icmp"}
    assert any(t.icmp is not None and t.icmp.max_packet_loss == 0.2 for t in config.targets)


# ---------------------------------------------------------------- slamon probe


def slamon(*argv: str, hide: str | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys\n"
    if hide:
        code += f"sys.modules[{hide!r}] = None  # as in an install without the extra\n"
    code += "from slamon.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=False)


@needs_icmp
def test_slamon_probe_icmp_url() -> None:
    res = slamon("probe", "icmp://127.0.0.1?count=2&interval=10ms", "--timeout", "1s")
    assert res.returncode == 0 and res.stdout.startswith("OK icmp://127.0.0.1"), res
    assert "rtt=" in res.stdout
    if _ipv6_loopback():
        res = slamon("probe", "icmp://[::1]")
        assert res.returncode == 0, res
    res = slamon("probe", "icmp://no-such-host.invalid")
    assert res.returncode == 1 and "reason=dns" in res.stdout, res
    for url, words in (("icmp://127.0.0.1?count=x", "icmp.count"),
                       ("icmp://127.0.0.1?size=1", "unknown parameter 'size'"),
                       ("icmp:///", "no host")):
        res = slamon("probe", url)
        assert res.returncode == 2 and words in res.stderr, (url, res)
        assert len(res.stderr.strip().splitlines()) == 1


def test_without_icmplib_one_line_names_the_extra() -> None:
    res = slamon("probe", "icmp://127.0.0.1", hide="icmplib")
    assert res.returncode == 2, res
    assert res.stderr.strip().splitlines() == [
        "slamon: error: kind 'icmp' needs icmplib, which is not installed: "
        "pip install 'slamon[icmp]'"], res.stderr
