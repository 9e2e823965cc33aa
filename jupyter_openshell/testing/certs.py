"""A throw-away test CA and server certificates for local upstream servers (never trusted by default)."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from mitmproxy import certs


class TestCA:
    """`TestCA(dir)` writes `test-ca.pem`; `server_context(names)` gives an SSLContext for a server."""

    __test__ = False  # not a pytest class

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = certs.create_ca(organization="openshell-test", cn="openshell test CA",
                                             key_size=2048)
        self.ca_path = self.directory / "test-ca.pem"
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def server_files(self, names: list[str]) -> tuple[Path, Path]:
        sans: list[x509.GeneralName] = []
        for n in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        leaf = certs.dummy_cert(self.key, self.cert, names[0], sans, "openshell-test")
        stem = names[0].replace("*", "star").replace(":", "_")
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(leaf.to_pem())
        key_path.write_bytes(self.key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                                     serialization.NoEncryption()))
        key_path.chmod(0o600)
        return cert_path, key_path

    def server_context(self, names: list[str]) -> ssl.SSLContext:
        cert_path, key_path = self.server_files(names)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        return ctx
