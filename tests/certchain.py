"""A CA -> intermediate -> leaf chain whose intermediate expires before the leaf,
made with `cryptography`, for the chain-expiry tests of the TLS probers."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.misbehaving import HOST


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org is not None:
        attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), *attrs]
    return x509.Name(attrs)


def _cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
          issuer_key: ec.EllipticCurvePrivateKey, not_after: dt.datetime, ca: bool,
          sans: list[x509.GeneralName] | None = None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Chain:
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate
    #: the root as a PEM file, for `ca_file`
    ca_file: str
    #: server side: the leaf and the intermediate, as a server sends them
    server: ssl.SSLContext

    @property
    def intermediate_expiry(self) -> float:
        return self.intermediate.not_valid_after_utc.timestamp()

    @property
    def leaf_expiry(self) -> float:
        return self.leaf.not_valid_after_utc.timestamp()


def make_chain(tmp: Path, intermediate_days: float = 5, leaf_days: float = 90) -> Chain:
    """Root for 10 years, an intermediate expiring in `intermediate_days`, a leaf for
    127.0.0.1 and localhost expiring in `leaf_days` (later: the chain's weak link is
    the intermediate). Whole seconds: X.509 times have no fractions."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    root_name = _name("slamon test root", "slamon tests")
    inter_name = _name("slamon test intermediate, G2", "slamon tests")
    root = _cert(root_name, keys[0], root_name, keys[0], now + dt.timedelta(days=3650), True)
    inter = _cert(inter_name, keys[1], root_name, keys[0],
                  now + dt.timedelta(days=intermediate_days), True)
    leaf = _cert(_name("leaf.test"), keys[2], inter_name, keys[1],
                 now + dt.timedelta(days=leaf_days), False,
                 [x509.DNSName("localhost"), x509.DNSName("leaf.test"),
                  x509.IPAddress(ipaddress.ip_address(HOST))])
    pem = serialization.Encoding.PEM
    ca_file = tmp / "chain-root.pem"
    ca_file.write_bytes(root.public_bytes(pem))
    chain_file = tmp / "chain-server.pem"
    chain_file.write_bytes(leaf.public_bytes(pem) + inter.public_bytes(pem))
    key_file = tmp / "chain-server.key"
    key_file.write_bytes(keys[2].private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(chain_file, key_file)
    return Chain(root, inter, leaf, str(ca_file), server)
