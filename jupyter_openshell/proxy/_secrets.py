"""Named secrets for credential injection, read only by the proxy process.

Sources, first match wins: the environment variable `OPENSHELL_SECRET_<NAME>` (name upper-cased,
`-` and `.` become `_`) and the file `<state>/secrets/<name>` (must be mode 0600 or stricter, owned by
the proxy's user). Values are read on each lookup so a rotated secret applies to the next request.
It must never log, print or return a secret anywhere but to the injecting addon.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

from ._scrub import scrub

ENV_PREFIX = "OPENSHELL_SECRET_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class SecretError(LookupError):
    """A secret is missing, unreadable or stored insecurely. The message never contains the value."""


def env_name(name: str) -> str:
    """The environment variable that may hold secret `name`."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def check_name(name: str) -> str:
    """`name` if it is a valid secret name (also a safe file name), else `SecretError`."""
    if not _NAME.match(name):
        raise SecretError(f"invalid secret name {name!r}: use letters, digits, '.', '_', '-' (at most 128)")
    return name


class SecretStore:
    def __init__(self, directory: Path | None, environ: dict[str, str] | None = None):
        self.directory = directory
        self._environ = os.environ if environ is None else environ
        self.issued: set[str] = set()

    def get(self, name: str) -> str:
        """The value of secret `name` (surrounding whitespace stripped); raises `SecretError`."""
        check_name(name)
        value = self._environ.get(env_name(name))
        if value and value.strip():
            self.issued.add(value.strip())
            return value.strip()
        if self.directory is None:
            raise SecretError(f"secret {name!r} not found: set {env_name(name)} for the proxy")
        path = self.directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise SecretError(
                f"secret {name!r} not found: create {path} (mode 0600) or set {env_name(name)} "
                "in the proxy's environment"
            ) from None
        except OSError as exc:
            raise SecretError(f"secret {name!r}: cannot open {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise SecretError(f"secret {name!r}: {path} is not a regular file")
            if st.st_mode & 0o077:
                raise SecretError(
                    f"secret {name!r}: {path} has mode {stat.S_IMODE(st.st_mode):04o}, which lets other "
                    f"users read it; run `chmod 600 {path}`"
                )
            if st.st_uid != os.geteuid():
                raise SecretError(
                    f"secret {name!r}: {path} is not owned by the proxy's user (uid {os.geteuid()})")
            value = fh.read().decode("utf-8", "strict").strip()
        if not value:
            raise SecretError(f"secret {name!r}: {path} is empty")
        self.issued.add(value)
        return value


class RedactingFilter(logging.Filter):
    """Redacts every secret value the store has handed out from log messages and tracebacks, in every
    spelling `_scrub` finds (percent-encoded, base64, JSON-escaped, ...): defence in depth."""

    def __init__(self, store: SecretStore):
        super().__init__()
        self.store = store

    def filter(self, record: logging.LogRecord) -> bool:
        issued = self.store.issued
        if issued:
            message = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            clean = _redact(message, issued)
            if clean != message:
                record.msg, record.args = clean, None
            if record.exc_text:
                record.exc_text = _redact(record.exc_text, issued)
        return True


def _redact(text: str, secrets: set[str]) -> str:
    data = text.encode("utf-8", "surrogateescape")
    for secret in secrets:
        data = scrub(data, secret.encode())
    return data.decode("utf-8", "surrogateescape")
