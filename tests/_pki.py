"""
A test's own public-key infrastructure, made with ``cryptography`` (installed with
Twisted's tls extra): a CA, a server certificate for 127.0.0.1 it signed, and a client
certificate another CA signed; PEM files in a folder, and the SPKI hash of the server's
key (what Chromium's ``--ignore-certificate-errors-spki-list`` trusts).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@attrs.frozen
class Pki:
    """The files: ``ca`` (server CA), ``key``/``cert`` (server), ``client_ca``,
    ``client_key``/``client_cert``, ``other_ca`` (a CA that signed nothing here); ``spki``."""

    ca: Path
    key: Path
    cert: Path
    client_ca: Path
    client_key: Path
    client_cert: Path
    other_ca: Path
    spki: str


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, name: str,
          server: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_pki(where: Path) -> Pki:
    """Make every file in ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM

    def write(name: str, data: bytes) -> Path:
        path = where / name
        path.write_bytes(data)
        path.chmod(0o600)
        return path

    ca_key, ca = _ca("proactor test CA")
    key, cert = _leaf(ca_key, ca, "127.0.0.1", server=True)
    client_ca_key, client_ca = _ca("proactor test client CA")
    client_key, client_cert = _leaf(client_ca_key, client_ca, "a client", server=False)
    _, other = _ca("a CA nobody here uses")
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return Pki(ca=write("ca.pem", ca.public_bytes(pem)), key=write("server.key", _pem_key(key)),
               cert=write("server.crt", cert.public_bytes(pem)),
               client_ca=write("client-ca.pem", client_ca.public_bytes(pem)),
               client_key=write("client.key", _pem_key(client_key)),
               client_cert=write("client.crt", client_cert.public_bytes(pem)),
               other_ca=write("other-ca.pem", other.public_bytes(pem)),
               spki=base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii"))
