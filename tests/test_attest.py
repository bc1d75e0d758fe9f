"""Attest-only mode: outbox files, the relayer API and `slamon report verify` / `keys new`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from structlog.testing import capture_logs

from slamon.chain.eip712 import Report, SignedReport, domain_data
from slamon.cli import build_parser
from slamon.config.oracle import KeyConfig, OracleConfig
from slamon.config.process import StateConfig
from slamon.config.root import Config
from slamon.oracle.http import add_routes
from slamon.oracle.keys import Signer, load_signer
from slamon.oracle.outbox import (
    Outbox,
    OutboxConflict,
    default_outbox_dir,
    outbox_dir,
)

REPO = Path(__file__).resolve().parent.parent
CHAIN_ID = 31337
CONTRACT = to_checksum_address("0x" + "c0" * 20)
OTHER = to_checksum_address("0x" + "0d" * 20)
KEYS = ["0x" + keccak(text=f"attest-signer-{i}").hex() for i in range(3)]


def signer(i: int) -> Signer:
    with capture_logs():  # the dev-key warning is expected here, not under test
        return load_signer(KeyConfig(dev_key_env="K"), environ={"K": KEYS[i]})


def report(period: int = 0, sli: int = 998_000, issued_at: int = 2010, sla: str = "gold") -> Report:
    start = 1000 + period * 1000
    return Report(
        sla_id=keccak(text=sla),
        period_id=period,
        period_start=start,
        period_end=start + 1000,
        sli_ppm=sli,
        slo_ppm=999_000,
        good=sli // 1000,
        valid=1000,
        no_data=2,
        breached=sli < 999_000,
        evidence_root=keccak(text=f"root-{period}"),
        policy_digest=keccak(text="policy"),
        issued_at=max(issued_at, start + 1000),
    )


def oracle_cfg(**kw: Any) -> OracleConfig:
    return OracleConfig(
        mode="attest", key=KeyConfig(dev_key_env="K"), chain_id=CHAIN_ID, contract=CONTRACT, **kw
    )


# -- outbox --------------------------------------------------------------------------------


def test_outbox_write_read_and_no_clobber(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    s0 = signer(0)
    signed = s0.sign_report(report(3), CHAIN_ID, CONTRACT)
    stored, written = box.write("gold", signed)
    assert written and stored == signed
    path = tmp_path / "outbox" / "gold" / f"3-{s0.address}.json"
    assert path.read_text() == signed.to_json() + "\n"
    assert SignedReport.from_json(path.read_text()) == signed
    assert box.read("gold", 3, s0.address.lower()) == signed
    assert box.read("gold", 4, s0.address) is None

    # the same report again: no-op
    assert box.write("gold", signed) == (signed, False)
    # re-signed after a restart with another issuedAt: the first one stays
    later = s0.sign_report(report(3, issued_at=9999), CHAIN_ID, CONTRACT)
    assert box.write("gold", later) == (signed, False)
    # a different result for the same period and signer: refused, file unchanged
    before = path.read_bytes()
    with pytest.raises(OutboxConflict, match="different report"):
        box.write("gold", s0.sign_report(report(3, sli=900_000), CHAIN_ID, CONTRACT))
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left

    # another signer, another period, another SLA
    box.write("gold", signer(1).sign_report(report(3), CHAIN_ID, CONTRACT))
    box.write("gold", s0.sign_report(report(4), CHAIN_ID, CONTRACT))
    box.write("silver", s0.sign_report(report(1, sla="silver"), CHAIN_ID, CONTRACT))
    entries = box.entries()
    assert [(e.sla, e.period_id) for e in entries] == [
        ("gold", 3), ("gold", 3), ("gold", 4), ("silver", 1)
    ]
    assert [e.period_id for e in box.entries("gold", since_period=4)] == [4]
    assert len(box.entries("gold", period=3)) == 2
    assert box.entries("nothing") == []


def test_outbox_skips_and_reports_bad_files(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    s0, s1 = signer(0), signer(1)
    good = s0.sign_report(report(1), CHAIN_ID, CONTRACT)
    box.write("gold", good)
    # a tampered file: the signature no longer matches
    forged = json.loads(good.to_json())
    forged["report"]["sliPpm"] = 1_000_000
    forged["report"]["breached"] = False
    (tmp_path / "gold" / f"2-{s0.address}.json").write_text(json.dumps(forged))
    # a valid report under the wrong file name
    (tmp_path / "gold" / f"5-{s1.address}.json").write_text(good.to_json())
    (tmp_path / "gold" / "README").write_text("ignored")
    errors: list[str] = []
    assert [e.signed for e in box.entries("gold", errors=errors)] == [good]
    assert len(errors) == 2 and any("file name" in e for e in errors)
    # a corrupt file where a new report would go is a conflict, never overwritten
    (tmp_path / "gold" / f"7-{s0.address}.json").write_text("{")
    with pytest.raises(OutboxConflict, match="not a valid signed report"):
        box.write("gold", s0.sign_report(report(7), CHAIN_ID, CONTRACT))


def test_outbox_directory_defaults(tmp_path: Path) -> None:
    cfg = Config(state=StateConfig(path=str(tmp_path / "st" / "slamon.sqlite3")))
    assert default_outbox_dir(cfg) == tmp_path / "st" / "outbox"
    assert outbox_dir(cfg) == tmp_path / "st" / "outbox"
    assert default_outbox_dir(Config(), {"STATE_DIRECTORY": "/var/lib/slamon"}) == Path(
        "/var/lib/slamon/outbox"
    )
    cfg = Config(oracle=oracle_cfg(outbox=str(tmp_path / "ob")))
    assert outbox_dir(cfg) == tmp_path / "ob"


# -- HTTP ----------------------------------------------------------------------------------


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    box = Outbox(tmp_path)
    for i in range(3):
        box.write("gold", signer(i).sign_report(report(0), CHAIN_ID, CONTRACT))
    box.write("gold", signer(0).sign_report(report(1), CHAIN_ID, CONTRACT))
    box.write("silver", signer(0).sign_report(report(0, sla="silver"), CHAIN_ID, CONTRACT))
    # an old contract's report: not served for this domain
    box.write("gold", signer(0).sign_report(report(2), CHAIN_ID, OTHER))
    app = web.Application()
    add_routes(app, box, oracle_cfg())
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_http_lists_attestations(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.get("/api/v1/attestations")
    assert resp.status == 200
    body = await resp.json()
    assert [(e["sla"], e["report"]["periodId"]) for e in body] == [
        ("gold", 0), ("gold", 0), ("gold", 0), ("gold", 1), ("silver", 0)
    ]
    for entry in body:
        assert entry["domain"] == domain_data(CHAIN_ID, CONTRACT)
        assert entry["domain"]["name"] == "slamon" and entry["domain"]["version"] == "1"
        signed = SignedReport.from_json_dict(entry)  # verifies the signature and digest
        assert signed.signer == entry["signer"] and signed.contract == CONTRACT
    assert {e["signer"] for e in body[:3]} == {signer(i).address for i in range(3)}

    body = await (await client.get("/api/v1/attestations?sla=gold&since_period=1")).json()
    assert [(e["sla"], e["report"]["periodId"]) for e in body] == [("gold", 1)]
    body = await (await client.get("/api/v1/attestations?sla=bronze")).json()
    assert body == []
    body = await (await client.get("/api/v1/attestations?limit=2")).json()
    assert len(body) == 2


async def test_http_one_period(client: TestClient[web.Request, web.Application]) -> None:
    resp = await client.get("/api/v1/attestations/gold/0")
    assert resp.status == 200
    body = await resp.json()
    assert sorted(e["signer"] for e in body) == sorted(signer(i).address for i in range(3))
    assert all(e["report"]["periodId"] == 0 for e in body)
    for path in ("/api/v1/attestations/gold/9", "/api/v1/attestations/gold/2",
                 "/api/v1/attestations/bronze/0"):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert "no attestation" in (await resp.json())["error"]
    for path in ("/api/v1/attestations/gold/-1", "/api/v1/attestations/gold/x",
                 "/api/v1/attestations?since_period=-3", "/api/v1/attestations?sla=../etc",
                 "/api/v1/attestations?limit=0", "/api/v1/attestations/..%2Fx/0"):
        resp = await client.get(path)
        assert resp.status in (400, 404), path
        assert "error" in await resp.json()


# -- commands ------------------------------------------------------------------------------


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = build_parser(argv).parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def write_signed(tmp_path: Path, signed: SignedReport, name: str = "r.json") -> str:
    path = tmp_path / name
    path.write_text(signed.to_json())
    return str(path)


def test_report_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s0 = signer(0)
    signed = s0.sign_report(report(0, sli=990_000), CHAIN_ID, CONTRACT)
    f = write_signed(tmp_path, signed)
    dom = ["--contract", CONTRACT.lower(), "--chain-id", str(CHAIN_ID)]

    code, out, err = run(["report", "verify", f, *dom], capsys)
    assert code == 0, err
    assert f"signer: {s0.address}" in out and f"digest: 0x{signed.digest().hex()}" in out
    assert "breached" in out
    code, out, _ = run(["report", "verify", f, *dom, "--signer", s0.address.lower()], capsys)
    assert code == 0
    code, _, err = run(["report", "verify", f, *dom, "--signer", signer(1).address], capsys)
    assert code == 1 and f"not by the expected signer {signer(1).address}" in err
    code, _, err = run(["report", "verify", f, "--contract", OTHER, "--chain-id", "31337"], capsys)
    assert code == 1 and "bound to chain" in err and "recovers" in err
    code, _, err = run(["report", "verify", f, "--contract", CONTRACT, "--chain-id", "1"], capsys)
    assert code == 1 and "bound to chain" in err

    doc = json.loads(signed.to_json())
    doc["report"]["good"] = 991
    code, _, err = run(["report", "verify", write_signed_doc(tmp_path, doc), *dom], capsys)
    assert code == 1 and "altered" in err
    doc = json.loads(signed.to_json())
    doc["signature"] = doc["signature"][:-2] + "1f"  # v = 31
    code, _, err = run(["report", "verify", write_signed_doc(tmp_path, doc), *dom], capsys)
    assert code == 1 and "invalid signature" in err
    # validly signed but inconsistent with the contract's rules
    bad = s0.sign_report(report(0, sli=990_000).replace(breached=False), CHAIN_ID, CONTRACT)
    code, _, err = run(["report", "verify", write_signed(tmp_path, bad, "b.json"), *dom], capsys)
    assert code == 1 and "breached=False" in err
    # an API entry (extra keys sla, domain) verifies too
    entry = {**json.loads(signed.to_json()), "sla": "gold", "domain": domain_data(1, CONTRACT)}
    code, _, _ = run(["report", "verify", write_signed_doc(tmp_path, entry), *dom], capsys)
    assert code == 0

    # a JSON list, as /api/v1/attestations/{sla}/{period} returns: every entry must pass
    other = signer(1).sign_report(report(0, sli=990_000), CHAIN_ID, CONTRACT)
    both = [json.loads(signed.to_json()), json.loads(other.to_json())]
    code, out, _ = run(["report", "verify", write_signed_doc(tmp_path, both), *dom], capsys)
    assert code == 0 and f"[1] signer: {signer(1).address}" in out
    code, out, err = run(["report", "verify", write_signed_doc(tmp_path, both), *dom,
                          "--signer", s0.address], capsys)
    assert code == 1 and "[0] signature valid" in out and "[1] signed by" in err

    for content in ("not json", "[]", "[1]", '{"version": 1}', '{"version": 2}',
                    json.dumps({**doc, "signature": "0xzz"})):
        (tmp_path / "x.json").write_text(content)
        code, _, err = run(["report", "verify", str(tmp_path / "x.json"), *dom], capsys)
        assert code == 2, content
        assert err.startswith("slamon: error:")
    code, _, err = run(["report", "verify", str(tmp_path / "missing.json"), *dom], capsys)
    assert code == 2 and "cannot read" in err
    with pytest.raises(SystemExit) as info:
        run(["report", "verify", f, "--contract", "0x12", "--chain-id", "1"], capsys)
    assert info.value.code == 2


def write_signed_doc(tmp_path: Path, doc: Any) -> str:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_keys_new_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ks, pw = tmp_path / "k.json", tmp_path / "pw"
    code, out, err = run(
        ["keys", "new", "--keystore", str(ks), "--password-file", str(pw), "--kdf", "pbkdf2"],
        capsys,
    )
    assert code == 0, err
    address = out.strip()
    assert to_checksum_address(address) == address and "random password" in err
    assert (ks.stat().st_mode & 0o777) == 0o600 and (pw.stat().st_mode & 0o777) == 0o600
    key = Account.decrypt(json.loads(ks.read_text()), pw.read_text().strip())
    assert Account.from_key(key).address == address
    assert key.hex() not in out + err
    code, _, err = run(["keys", "new", "--keystore", str(ks), "--password-file", str(pw)], capsys)
    assert code == 1 and "already exists" in err


def test_commands_in_a_subprocess(tmp_path: Path) -> None:
    signed = signer(2).sign_report(report(0), CHAIN_ID, CONTRACT)
    good = write_signed(tmp_path, signed)
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe garbage")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SLAMON_DEBUG", None)

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "slamon", *argv],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False,
        )

    dom = ["--contract", CONTRACT, "--chain-id", str(CHAIN_ID)]
    p = cli("report", "verify", good, *dom, "--signer", signer(2).address)
    assert p.returncode == 0 and f"signer: {signer(2).address}" in p.stdout, p.stderr
    for args in ([str(bad), *dom], [str(tmp_path), *dom], ["nope.json", *dom],
                 [good, "--contract", "nope", "--chain-id", "1"]):
        p = cli("report", "verify", *args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr and "error" in p.stderr
    p = cli("report", "verify", good, "--contract", OTHER, "--chain-id", str(CHAIN_ID))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    p = subprocess.run(
        [sys.executable, "-m", "slamon", "report", "verify", "-", *dom],
        input=signed.to_json(), capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert p.returncode == 0, p.stderr
    p = cli("keys", "new", "--keystore", str(tmp_path / "d" / "k.json"), "--password-file",
            str(tmp_path / "d" / "pw"), "--kdf", "pbkdf2")
    assert p.returncode == 0 and p.stdout.strip().startswith("0x"), p.stderr
