#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine, then run lint and the whole test suite.
# Runs as root (CI) and as an ordinary user; the unprivileged paths are exercised from inside the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check jupyter_openshell tests bench
# TypeScript unit tests of the JupyterLab extension (node_modules comes from setup.sh)
(cd labextension && npx --no-install jest --ci --silent)
# The venv's real path (it is a link to /opt when this checkout is unreadable by other uids) and -P (no
# checkout on sys.path): tests, sandboxes and unprivileged users then all run the same installed code.
exec "$(readlink -f .venv)/bin/python" -P -m pytest -p no:cacheprovider -q "$@"
