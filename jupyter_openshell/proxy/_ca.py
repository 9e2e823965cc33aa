"""The interception CA: created once in `<state>/ca/` (the mitmproxy confdir) and exported as a bundle.

`ensure_ca(confdir)` creates `mitmproxy-ca.pem` (private key + certificate, mode 0600) if it is missing,
forces 0600 on every file that holds the key, and writes `ca-bundle.pem`: the system roots (certifi,
else /etc/ssl) followed by our CA certificate, which sandboxes mount read-only and trust.
`upstream_trust` builds what the proxy verifies upstream servers against: by default the machine's
OpenSSL store plus certifi (`openshell proxy --upstream-trust`, `--upstream-ca`).
It must never copy the private key anywhere else or make it readable by anyone but its owner.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from mitmproxy import certs

from jupyter_openshell.paths import CA_BUNDLE, ensure_private_dir

BASENAME = "mitmproxy"
BUNDLE = CA_BUNDLE
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


TRUST_STORES = ("system+certifi", "system", "certifi")


def _system_store() -> tuple[Path | None, str | None]:
    """(CA file, hashed CA directory) of this machine's OpenSSL store, where organisations install
    their own CAs; `SSL_CERT_FILE` / `SSL_CERT_DIR` of the proxy's environment are honoured as OpenSSL
    honours them."""
    paths = ssl.get_default_verify_paths()
    cafile = Path(paths.cafile) if paths.cafile else next(
        (Path(c) for c in _SYSTEM_BUNDLES if Path(c).is_file()), None)
    return cafile, paths.capath if paths.capath and Path(paths.capath).is_dir() else None


def upstream_trust(confdir: Path, store: str = "system+certifi",
                   extra: Path | None = None) -> tuple[Path, str | None]:
    """The CA file (and CA directory, or None) that upstream servers are verified against: `store` is
    "system+certifi" (default), "system", "certifi" or the path of a PEM file trusted alone; the
    certificates in `extra` (`--upstream-ca`) are trusted as well. Raises ValueError when nothing
    would be trusted or a file cannot be read."""
    files: list[Path] = []
    capath = None
    if store in ("system", "system+certifi"):
        cafile, capath = _system_store()
        files += [cafile] if cafile else []
    if store in ("certifi", "system+certifi"):
        import certifi

        files.append(Path(certifi.where()))
    if store not in TRUST_STORES:
        files.append(Path(store))
    if extra is not None:
        files.append(extra)
    if not files and capath is None:
        raise ValueError(f"no CA certificates found for the upstream trust store {store!r}")
    chunks = []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read CA certificates from {f}: {exc.strerror}") from None
        chunks.append(data if data.endswith(b"\n") else data + b"\n")
    path = confdir / "upstream-trust.pem"
    tmp = confdir / f".upstream-trust.{os.getpid()}.tmp"
    tmp.write_bytes(b"".join(chunks))
    os.replace(tmp, path)
    return path, capath
