"""Lazy re-exports for package `__init__` modules: a public name is imported from its private module
on first use, so that importing one part of a package (the CLI's `sandbox exec`, `create`, `rm`) does
not pay for the others (the YAML parsers, the secret scrubber, http.client and ssl).

It must never import anything itself beyond importlib, nor export a name it was not given.
"""

from __future__ import annotations

from importlib import import_module

TYPE_CHECKING = False  # (not typing.TYPE_CHECKING: keeps `typing` out of the CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `exports` maps a public name to "._module" or
    "._module:attribute" (when the public name differs); each is looked up once, then cached in the
    package's namespace."""
    import sys

    def __getattr__(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = where.partition(":")
        value = getattr(import_module(module, package), attribute or name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
