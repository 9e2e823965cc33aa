"""The user's working copy of the demo notebook: `openshell demo` serves a copy in a directory of theirs
(default ~/openshell-demo), never the tracked examples/openshell-demo.ipynb of the checkout, where
JupyterLab would write checkpoints and the user's edits.

A copy the user edited is kept (and they are told so); an untouched copy of an older version is
replaced by the current one. It must never overwrite a user's edits, nor write into the checkout.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

MARK = ".openshell-demo-original.sha256"  # sha256 of the notebook as last copied: edits change it


def default_dir() -> Path:
    return Path.home() / "openshell-demo"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def working_copy(original: Path, directory: Path) -> tuple[Path, str]:
    """(the copy to serve, what was done, in words) for the tracked notebook `original`."""
    directory = directory.expanduser().resolve()
    checkout = original.resolve().parent
    if directory == checkout or checkout in directory.parents:
        raise SystemExit(
            f"openshell demo: {directory} is inside {checkout}, where the tracked demo notebook lives; "
            f"pick a directory of your own with --dir (default {default_dir()})"
        )
    directory.mkdir(parents=True, exist_ok=True)
    copy, mark = directory / original.name, directory / MARK
    new = _sha(original)
    if not copy.exists():
        action = f"copied the demo notebook to {copy}"
    elif _sha(copy) == new:
        return copy, f"serving {copy}"
    elif mark.exists() and mark.read_text().strip() == _sha(copy):
        action = f"updated {copy} to the current demo notebook (you had not changed it)"
    else:
        return copy, (f"keeping your edited {copy}; the original is {original} "
                      f"(delete your copy, or use --dir, to start from it again)")
    tmp = copy.with_name(f".{copy.name}.tmp")
    shutil.copyfile(original, tmp)
    os.replace(tmp, copy)
    mark.write_text(new + "\n")
    return copy, action
