"""The oracle's signing key: an encrypted JSON keystore plus a password file, or (for
development only) a raw private key in an environment variable.

The key never leaves this module in readable form: :class:`Signer` keeps the account in a
private slot, shows only its address in ``repr``/``str``, refuses to be pickled, and no error
message or log line here contains the key, the password or the files' contents.

Files must be regular files readable and writable by their owner only (``st_mode & 0o077 ==
0``); anything else is refused with the fix (``chmod 600 FILE``) in the message.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

from eth_account import Account
from eth_utils.address import to_checksum_address

from slamon.chain.eip712 import Report, SignedReport
from slamon.util.fsutil import write_new_file

if TYPE_CHECKING:
    from eth_account.datastructures import SignedTransaction
    from eth_account.signers.local import LocalAccount

    from slamon.config.oracle import KeyConfig

__all__ = [
    "KeyLoadError",
    "Signer",
    "load_signer",
    "new_keystore",
    "read_secret_file",
]

#: largest keystore / password file we read (a keystore is ~500 bytes)
_MAX_FILE = 64 * 1024
#: the local development chain (anvil), the only one a development key may sign for
DEV_CHAIN_ID = 31337
_HEX_KEY = re.compile(r"(0x)?[0-9a-fA-F]{64}")


class KeyLoadError(Exception):
    """The signing key cannot be loaded or created. The message names the file and says
    what to do; it never contains the key, the password or file contents."""


class _Log(Protocol):
    def warning(self, event: str, **kw: Any) -> Any: ...

    def info(self, event: str, **kw: Any) -> Any: ...


class Signer:
    """Signs EIP-712 reports and transactions with the oracle's key; shows only the address."""

    __slots__ = ("__account", "address", "source")

    address: str
    source: str

    def __init__(self, account: LocalAccount, source: str) -> None:
        self.__account = account
        #: checksummed address of the key
        self.address = to_checksum_address(account.address)
        #: where the key came from: "keystore:<path>" or "env:<NAME>" (never the key)
        self.source = source

    def sign_report(self, report: Report, chain_id: int, contract: str) -> SignedReport:
        """Sign ``report`` for the ``SLACompensation`` at ``contract`` on ``chain_id``."""
        return SignedReport.sign(report, self.__account.key, chain_id, contract)

    def sign_rotation(self, sla_id: bytes, version: int, signers: list[str], quorum: int,
                      chain_id: int, contract: str) -> bytes:
        """Approve signer set ``version`` of ``sla_id`` (EIP-712 ``Rotation``)."""
        from slamon.chain.eip712 import sign_rotation

        return sign_rotation(sla_id, version, signers, quorum, self.__account.key, chain_id,
                             contract)

    def sign_transaction(self, tx: Mapping[str, Any]) -> SignedTransaction:
        """Sign a transaction dict (``eth_account`` format) for the publisher."""
        return self.__account.sign_transaction(dict(tx))

    def __repr__(self) -> str:
        return f"Signer(address={self.address})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Signer cannot be pickled or copied (it holds a private key)")

    def __copy__(self) -> NoReturn:
        raise TypeError("a Signer cannot be copied (it holds a private key)")

    def __deepcopy__(self, memo: Any) -> NoReturn:
        raise TypeError("a Signer cannot be copied (it holds a private key)")


# -- reading secret files ------------------------------------------------------------------


def _mode_problem(what: str, path: Path, st: os.stat_result) -> str | None:
    if not stat.S_ISREG(st.st_mode):
        return f"{what} {path} is not a regular file"
    loose = st.st_mode & 0o077
    if loose:
        who = []
        if st.st_mode & 0o070:
            who.append("group")
        if st.st_mode & 0o007:
            who.append("others")
        return (
            f"{what} {path} is accessible by {' and '.join(who)} "
            f"(mode {stat.S_IMODE(st.st_mode):04o}): run `chmod 600 {path}` "
            "so that only its owner can read it"
        )
    return None


def read_secret_file(path: str | os.PathLike[str], what: str) -> bytes:
    """Contents of a secret file after the checks (regular, owner-only, not huge).

    The file is opened first and the *opened* file is checked (no race with a swap of the
    path). Raises :class:`KeyLoadError` naming ``what`` and the path.
    """
    p = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise KeyLoadError(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise KeyLoadError(f"{what} {p} is not a regular file") from None
    except PermissionError:
        raise KeyLoadError(
            f"{what} {p} is not readable by this user (uid {os.getuid()}): check its owner"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KeyLoadError(f"cannot open {what} {p}: {reason}") from None
    try:
        st = os.fstat(fd)
        problem = _mode_problem(what, p, st)
        if problem:
            raise KeyLoadError(problem)
        if st.st_size > _MAX_FILE:
            raise KeyLoadError(f"{what} {p} is too large ({st.st_size} bytes) to be a {what}")
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, _MAX_FILE + 1)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise KeyLoadError(f"cannot read {what} {p}: {reason}") from None
    finally:
        os.close(fd)


def _password(data: bytes, path: Path) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyLoadError(f"password file {path} is not valid UTF-8") from None
    # one trailing newline (as written by `echo` or an editor) is not part of the password
    password = text.removesuffix("\n").removesuffix("\r")
    if not password:
        raise KeyLoadError(f"password file {path} is empty")
    return password


def _decrypt(keystore: Path, password_file: Path) -> LocalAccount:
    raw = read_secret_file(keystore, "keystore")
    password = _password(read_secret_file(password_file, "password file"), password_file)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise KeyLoadError(
            f"keystore {keystore} is not valid JSON: is it an encrypted keystore "
            "(as written by `slamon keys new` or geth)?"
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("crypto", doc.get("Crypto")), dict):
        raise KeyLoadError(f"keystore {keystore} is not an encrypted JSON keystore (no 'crypto')")
    try:
        key = Account.decrypt(doc, password)
    except Exception as exc:  # eth_keyfile raises ValueError subclasses, KeyError, TypeError
        if "MAC mismatch" in str(exc):
            raise KeyLoadError(
                f"wrong password for keystore {keystore} (password file {password_file})"
            ) from None
        raise KeyLoadError(
            f"keystore {keystore} cannot be decrypted: unsupported or corrupt "
            f"({type(exc).__name__})"
        ) from None
    account: LocalAccount = Account.from_key(key)
    del key, password
    address = doc.get("address")
    if isinstance(address, str) and address:
        try:
            expected = to_checksum_address("0x" + address.lower().removeprefix("0x"))
        except ValueError:
            expected = None
        if expected is not None and expected != account.address:
            raise KeyLoadError(
                f"keystore {keystore} says address {expected} but its key is for "
                f"{account.address}: the file is corrupt"
            )
    return account


DEV_WARNING = (
    "\n"
    "!!! slamon: DEVELOPMENT KEY IN USE !!!\n"
    "!!! The signing key comes from the environment variable {name} (address {address}).\n"
    "!!! Environment variables leak (process listings, crash dumps, child processes).\n"
    "!!! Never do this with a key that signs real SLA reports: use an encrypted keystore\n"
    "!!! and a password file (`slamon keys new`).\n"
)


def _from_env(name: str, environ: Mapping[str, str], log: _Log) -> LocalAccount:
    value = environ.get(name)
    if value is None or not value.strip():
        raise KeyLoadError(f"environment variable {name} (oracle.key.dev_key_env) is not set")
    value = value.strip()
    if not _HEX_KEY.fullmatch(value):
        raise KeyLoadError(
            f"environment variable {name} must hold a private key as 64 hex digits "
            "(optionally 0x-prefixed); its value is not shown"
        )
    try:
        account: LocalAccount = Account.from_key(value)
    except Exception:
        raise KeyLoadError(
            f"environment variable {name} does not hold a valid secp256k1 private key"
        ) from None
    del value
    log.warning(
        "dev_key_in_use",
        env=name,
        address=account.address,
        message="signing key from an environment variable: for development only",
    )
    print(DEV_WARNING.format(name=name, address=account.address), file=sys.stderr, flush=True)
    return account


def load_signer(
    key_cfg: KeyConfig,
    *,
    environ: Mapping[str, str] | None = None,
    log: _Log | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    chain_id: int | None = None,
) -> Signer:
    """Load the oracle key described by ``key_cfg`` (``oracle.key`` in the config).

    With ``chain_id`` (the chain the reports are for), a development key is refused on any
    chain but the local dev chain 31337.

    Relative file paths are resolved against ``base_dir`` (the config file's directory,
    when given) else the working directory. Raises :class:`KeyLoadError`.
    """
    if log is None:
        from slamon.util.log import get_logger

        log = get_logger()
    env = os.environ if environ is None else environ
    if key_cfg.keystore is not None and key_cfg.password_file is not None:
        keystore = _resolve(key_cfg.keystore, base_dir)
        password_file = _resolve(key_cfg.password_file, base_dir)
        account = _decrypt(keystore, password_file)
        signer = Signer(account, f"keystore:{keystore}")
        log.info("signer_loaded", address=signer.address, keystore=str(keystore))
        return signer
    if key_cfg.dev_key_env is not None:
        if chain_id is not None and chain_id != DEV_CHAIN_ID:
            # an environment variable leaks; whatever it signs must be worth nothing
            raise KeyLoadError(
                f"oracle.key.dev_key_env is only accepted on the dev chain {DEV_CHAIN_ID} "
                f"(oracle.chain_id is {chain_id}): use keystore + password_file"
            )
        account = _from_env(key_cfg.dev_key_env, env, log)
        return Signer(account, f"env:{key_cfg.dev_key_env}")
    raise KeyLoadError("oracle.key: set keystore + password_file (or dev_key_env)")


def _resolve(path: str, base_dir: str | os.PathLike[str] | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


# -- creating a keystore -------------------------------------------------------------------


def _publish_new(path: Path, data: bytes, what: str) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically and without clobbering.

    A temp file in the same directory is written and fsynced, then hard-linked to ``path``
    (``link`` fails if ``path`` exists, so a concurrent writer cannot be overwritten).
    """
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise KeyLoadError(
            f"cannot create directory {directory} for the {what}: {exc.strerror or exc}"
        ) from None
    try:
        written = write_new_file(path, data, 0o600)
    except OSError as exc:
        raise KeyLoadError(f"cannot write the {what} {path}: {exc.strerror or exc}") from None
    if not written:
        raise KeyLoadError(f"{what} {path} already exists: not overwriting it")


def new_keystore(
    path: str | os.PathLike[str],
    password_file: str | os.PathLike[str],
    *,
    kdf: Literal["scrypt", "pbkdf2"] = "scrypt",
    iterations: int | None = None,
) -> tuple[str, bool]:
    """Create a fresh key, encrypted with the password in ``password_file``, at ``path``.

    When ``password_file`` does not exist it is created (0600) with a random password.
    ``path`` must not exist (never clobbered). Both files are written atomically with mode
    0600. ``iterations`` overrides the KDF cost (scrypt ``n`` / pbkdf2 ``c``; tests only).
    Returns ``(checksummed address, password_file_created)``.
    """
    keystore = Path(path).expanduser()
    pw_path = Path(password_file).expanduser()
    if keystore.exists() or keystore.is_symlink():
        raise KeyLoadError(f"keystore {keystore} already exists: not overwriting it")
    created = False
    if pw_path.exists() or pw_path.is_symlink():
        password = _password(read_secret_file(pw_path, "password file"), pw_path)
    else:
        password = secrets.token_urlsafe(32)
        _publish_new(pw_path, (password + "\n").encode("ascii"), "password file")
        created = True
    account: LocalAccount = Account.create()
    doc = Account.encrypt(account.key, password, kdf=kdf, iterations=iterations)
    del password
    data = (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode("ascii")
    try:
        _publish_new(keystore, data, "keystore")
    except KeyLoadError:
        if created:  # do not leave an orphan password file behind
            with contextlib.suppress(OSError):
                pw_path.unlink()
        raise
    return to_checksum_address(account.address), created
