"""The interception CA: created once in `<state>/ca/` (the mitmproxy confdir) and exported as a bundle.

`ensure_ca(confdir)` creates `mitmproxy-ca.pem` (private key + certificate, mode 0600) if it is missing,
forces 0600 on every file that holds the key, and writes `ca-bundle.pem`: the system roots (certifi,
else /etc/ssl) followed by our CA certificate, which sandboxes mount read-only and trust.
It must never copy the private key anywhere else or make it readable by anyone but its owner.
"""

from __future__ import annotations

import os
from pathlib import Path

from mitmproxy import certs

from jupyter_openshell.paths import ensure_private_dir

BASENAME = "mitmproxy"
BUNDLE = "ca-bundle.pem"
_KEY_FILES = (f"{BASENAME}-ca.pem", f"{BASENAME}-ca.p12")
_SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
)


def _system_roots() -> bytes:
    try:
        import certifi

        return Path(certifi.where()).read_bytes()
    except (ImportError, OSError):
        pass
    for candidate in _SYSTEM_BUNDLES:
        try:
            return Path(candidate).read_bytes()
        except OSError:
            continue
    return b""


def ensure_ca(confdir: Path) -> Path:
    """Create the CA in `confdir` if needed, refresh the bundle, and return the bundle's path."""
    ensure_private_dir(confdir)
    if not (confdir / _KEY_FILES[0]).exists():
        certs.CertStore.create_store(confdir, BASENAME, 2048)
    for name in _KEY_FILES:
        path = confdir / name
        if path.exists() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    ours = (confdir / f"{BASENAME}-ca-cert.pem").read_bytes()
    roots = _system_roots()
    if roots and not roots.endswith(b"\n"):
        roots += b"\n"
    bundle = confdir / BUNDLE
    tmp = confdir / f".{BUNDLE}.{os.getpid()}.tmp"
    tmp.write_bytes(roots + b"# jupyter-openshell interception CA\n" + ours)
    tmp.chmod(0o644)
    os.replace(tmp, bundle)
    return bundle


def ca_cert_path(confdir: Path) -> Path:
    """The PEM certificate (no key) of the interception CA."""
    return confdir / f"{BASENAME}-ca-cert.pem"


def upstream_trust(confdir: Path, extra: Path) -> Path:
    """A CA file for verifying upstream servers: the system roots plus the certificates in `extra`."""
    path = confdir / "upstream-trust.pem"
    tmp = confdir / f".upstream-trust.{os.getpid()}.tmp"
    tmp.write_bytes(_system_roots() + b"\n" + extra.read_bytes())
    os.replace(tmp, path)
    return path
