"""Oracle signing keys: keystore + password file checks, dev env key, secrecy of the key."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import traceback
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from structlog.testing import capture_logs

from slamon.chain.eip712 import Report, recover_signer
from slamon.config.oracle import KeyConfig
from slamon.oracle.keys import KeyLoadError, load_signer, new_keystore
from slamon.util.log import configure_logging, get_logger

FAST = 2**10  # scrypt n for tests (the default 2**18 takes ~0.6 s per operation)
CONTRACT = "0x" + "ab" * 20
DEV_KEY = "0x" + keccak(text="slamon-dev-key").hex()


def report() -> Report:
    return Report(
        sla_id=keccak(text="gold"),
        period_id=3,
        period_start=1000,
        period_end=2000,
        sli_ppm=999_500,
        slo_ppm=999_000,
        good=1999,
        valid=2000,
        no_data=1,
        breached=False,
        evidence_root=keccak(text="root"),
        policy_digest=keccak(text="policy"),
        issued_at=2005,
    )


def make_keystore(tmp_path: Path, password: str = "correct horse") -> tuple[Path, Path, str]:
    pw = tmp_path / "pw"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    ks = tmp_path / "key.json"
    address, created = new_keystore(ks, pw, iterations=FAST)
    assert not created
    return ks, pw, address


def cfg(ks: Path, pw: Path) -> KeyConfig:
    return KeyConfig(keystore=str(ks), password_file=str(pw))


def test_new_keystore_round_trip(tmp_path: Path) -> None:
    ks, pw, address = make_keystore(tmp_path)
    assert (ks.stat().st_mode & 0o777) == 0o600
    assert json.loads(ks.read_text())["address"].lower() == address[2:].lower()
    with capture_logs() as logs:
        signer = load_signer(cfg(ks, pw), environ={})
    assert signer.address == address
    assert logs == [
        {"event": "signer_loaded", "log_level": "info", "address": address, "keystore": str(ks)}
    ]
    signed = signer.sign_report(report(), 31337, CONTRACT)
    signed.verify()
    assert recover_signer(signed.report, signed.signature, 31337, CONTRACT) == address
    tx = signer.sign_transaction(
        {"to": to_checksum_address(CONTRACT), "value": 0, "gas": 21000, "maxFeePerGas": 10**9,
         "maxPriorityFeePerGas": 10**8, "nonce": 0, "chainId": 31337, "data": b""}
    )
    assert Account.recover_transaction(tx.raw_transaction) == address


def test_new_keystore_creates_random_password_file_and_never_clobbers(tmp_path: Path) -> None:
    old = os.umask(0)  # the files must be 0600 whatever the umask
    try:
        ks, pw = tmp_path / "sub" / "key.json", tmp_path / "sub" / "pw"
        address, created = new_keystore(ks, pw, kdf="pbkdf2", iterations=1000)
    finally:
        os.umask(old)
    assert created
    assert (pw.stat().st_mode & 0o777) == 0o600 and (ks.stat().st_mode & 0o777) == 0o600
    assert len(pw.read_text().strip()) >= 40
    with capture_logs():
        assert load_signer(cfg(ks, pw)).address == address
    before = ks.read_bytes()
    with pytest.raises(KeyLoadError, match="already exists"):
        new_keystore(ks, pw, iterations=FAST)
    assert ks.read_bytes() == before
    assert not [p for p in ks.parent.iterdir() if p.name.endswith(".tmp")]


def test_new_keystore_refuses_loose_existing_password_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret")
    pw.chmod(0o644)
    with pytest.raises(KeyLoadError, match="chmod 600"):
        new_keystore(tmp_path / "key.json", pw, iterations=FAST)
    assert not (tmp_path / "key.json").exists()


@pytest.mark.parametrize(
    ("which", "mode", "who"),
    [
        ("ks", 0o640, "group"),
        ("ks", 0o604, "others"),
        ("pw", 0o660, "group"),
        ("pw", 0o666, "group and others"),
        ("pw", 0o602, "others"),  # writable by others is refused too
    ],
)
def test_refuses_files_accessible_by_others(
    tmp_path: Path, which: str, mode: int, who: str
) -> None:
    ks, pw, _ = make_keystore(tmp_path)
    path = ks if which == "ks" else pw
    path.chmod(mode)
    with pytest.raises(KeyLoadError) as info:
        load_signer(cfg(ks, pw))
    msg = str(info.value)
    assert str(path) in msg and f"accessible by {who}" in msg and f"chmod 600 {path}" in msg


def test_refuses_missing_and_non_regular_files(tmp_path: Path) -> None:
    ks, pw, _ = make_keystore(tmp_path)
    with pytest.raises(KeyLoadError, match="does not exist"):
        load_signer(cfg(tmp_path / "nope.json", pw))
    with pytest.raises(KeyLoadError, match=r"password file .*/gone does not exist"):
        load_signer(cfg(ks, tmp_path / "gone"))
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(KeyLoadError, match="not a regular file"):
        load_signer(cfg(d, pw))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)  # opening must not block
    with pytest.raises(KeyLoadError, match="not a regular file"):
        load_signer(cfg(ks, fifo))


def test_wrong_password_and_corrupt_keystore(tmp_path: Path) -> None:
    ks, pw, _ = make_keystore(tmp_path, "the right one")
    pw.write_text("hunter2-wrong\n")
    with pytest.raises(KeyLoadError) as info:
        load_signer(cfg(ks, pw))
    assert "wrong password" in str(info.value) and str(ks) in str(info.value)
    assert "hunter2" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__

    bad = tmp_path / "bad.json"
    bad.write_text('{"crypto": ')
    bad.chmod(0o600)
    with pytest.raises(KeyLoadError, match="not valid JSON"):
        load_signer(cfg(bad, pw))
    bad.write_text('{"version": 3}')
    with pytest.raises(KeyLoadError, match="not an encrypted JSON keystore"):
        load_signer(cfg(bad, pw))
    doc = json.loads(ks.read_text())
    doc["crypto"]["kdf"] = "argon9"
    bad.write_text(json.dumps(doc))
    with pytest.raises(KeyLoadError, match="cannot be decrypted"):
        load_signer(cfg(bad, pw))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(KeyLoadError, match="empty"):
        load_signer(cfg(ks, empty))


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    ks, pw, address = make_keystore(tmp_path)
    with capture_logs():
        signer = load_signer(KeyConfig(keystore=ks.name, password_file=pw.name),
                             base_dir=tmp_path)
    assert signer.address == address


def test_dev_env_key_warns_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    with capture_logs() as logs:
        signer = load_signer(
            KeyConfig(dev_key_env="SLAMON_DEV_KEY"), environ={"SLAMON_DEV_KEY": DEV_KEY}
        )
    assert signer.address == Account.from_key(DEV_KEY).address
    assert signer.source == "env:SLAMON_DEV_KEY"
    (entry,) = logs
    assert (entry["log_level"], entry["event"]) == ("warning", "dev_key_in_use")
    assert entry["env"] == "SLAMON_DEV_KEY" and entry["address"] == signer.address
    err = capsys.readouterr().err
    assert "DEVELOPMENT KEY" in err and "SLAMON_DEV_KEY" in err
    assert DEV_KEY[2:] not in err and DEV_KEY[2:] not in repr(logs)


def test_dev_env_errors_do_not_show_the_value() -> None:
    k = KeyConfig(dev_key_env="K")
    with pytest.raises(KeyLoadError, match="is not set"):
        load_signer(k, environ={})
    for value in ("0x1234", DEV_KEY[:-1] + "z", "0x" + "00" * 32):
        with pytest.raises(KeyLoadError) as info:
            load_signer(k, environ={"K": value})
        assert value not in str(info.value) and value[2:] not in str(info.value)


def test_signer_shows_only_its_address() -> None:
    with capture_logs():
        signer = load_signer(KeyConfig(dev_key_env="K"), environ={"K": DEV_KEY})
    for text in (repr(signer), str(signer), f"{signer}", repr([signer])):
        assert text == f"Signer(address={signer.address})" or signer.address in text
        assert DEV_KEY[2:] not in text.lower()
    assert not hasattr(signer, "__dict__")
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError):
            attempt(signer)


def test_secrets_never_in_logs_or_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Drive every path through the real structlog set-up and scan everything produced."""
    password = "pa55-word-that-must-not-leak"
    ks, pw, _ = make_keystore(tmp_path, password)
    key_hex = Account.decrypt(json.loads(ks.read_text()), password).hex()
    secrets = [key_hex, key_hex.upper(), password, DEV_KEY[2:], DEV_KEY[2:].upper()]
    buf = io.StringIO()
    configure_logging("debug", "json", stream=buf)
    texts: list[str] = []
    try:
        log = get_logger()
        signer = load_signer(cfg(ks, pw), log=log)
        texts += [repr(signer), str(signer), repr(signer.sign_report(report(), 1, CONTRACT))]
        load_signer(KeyConfig(dev_key_env="DEV"), environ={"DEV": DEV_KEY}, log=log)
        failures: list[tuple[KeyConfig, dict[str, str]]] = []
        wrong = tmp_path / "wrong"
        wrong.write_text(password[::-1])
        wrong.chmod(0o600)
        failures.append((cfg(ks, wrong), {}))
        loose = tmp_path / "loose"
        loose.write_text(password)
        loose.chmod(0o644)
        failures.append((cfg(ks, loose), {}))
        failures.append((KeyConfig(dev_key_env="DEV"), {"DEV": DEV_KEY + "00"}))
        failures.append((KeyConfig(dev_key_env="DEV"), {"DEV": key_hex[:-2] + "zz"}))
        for key_cfg, env in failures:
            try:
                load_signer(key_cfg, environ=env, log=log)
            except KeyLoadError as exc:
                texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
                log.error("key_failed", error=str(exc))
            else:
                raise AssertionError(f"{key_cfg} loaded")
    finally:
        configure_logging("info", "json")
    captured = capsys.readouterr()
    texts += [buf.getvalue(), captured.out, captured.err]
    assert "dev_key_in_use" in buf.getvalue() and "key_failed" in buf.getvalue()
    blob = "\n".join(texts)
    for secret in secrets:
        assert secret not in blob
    assert key_hex[:-2] not in blob


def test_dev_key_refused_off_the_dev_chain(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"K": DEV_KEY}
    with capture_logs() as logs:
        assert load_signer(KeyConfig(dev_key_env="K"), environ=env, chain_id=31337).address
        with pytest.raises(KeyLoadError, match="dev chain 31337"):
            load_signer(KeyConfig(dev_key_env="K"), environ=env, chain_id=1)
    # refused before the key is read: only the accepted load logged its warning
    assert [e["event"] for e in logs] == ["dev_key_in_use"]
    assert DEV_KEY[2:] not in capsys.readouterr().err
