#!/usr/bin/env bash
# Set up jupyter-openshell on a fresh Debian/Ubuntu machine: system packages, a venv, the package.
# Usage: scripts/setup.sh [--test]     (--test also installs the test dependencies)
# Idempotent: a second run only checks. Never downloads anything but Debian, PyPI and npm packages (the
# JupyterLab extension's build toolchain, pinned by labextension/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."
# The demo extras (JupyterLab, nbclient, openai) serve the README's main command, `openshell demo`.
extras="[demo]"
[ "${1:-}" = "--test" ] && extras="[demo,test]"

# command:package (Debian). The product runs these on the host or in its sandboxes:
product_apt="bwrap:bubblewrap setpriv:util-linux timeout:coreutils curl:curl git:git ip:iproute2 node:nodejs npm:npm"
# and `--test` adds what the tests run (tests/test_setup_packages.py checks that every command the tests
# call is named here or comes with every Debian system): ACLs on workspaces, JupyterLab and Notebook 7 in
# a headless browser, a C compiler (a real LD_PRELOAD library), namespaces of one's own, workspace disk
# images, the docker backend's engine (the tests start dockerd where none runs) and debootstrap (which
# builds its default sandbox image without a container registry), and podman (+ catatonit, its pause
# process; runc is the OCI runtime used) to run the Kubernetes backend's rendered Pod (`podman kube play`).
test_apt="setfacl:acl chromium:chromium chromedriver:chromium-driver cc:gcc gcc:gcc unshare:util-linux
  setsid:util-linux mkfs.ext4:e2fsprogs mount:mount umount:mount dockerd:docker.io debootstrap:debootstrap
  podman:podman catatonit:catatonit runc:runc"
need_apt=()
test_missing=()
for pair in $product_apt; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need_apt+=("${pair#*:}")
done
if [ "$extras" = "[demo,test]" ]; then
  for pair in $test_apt; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 || test_missing+=("${pair#*:}")
  done
fi
[ -e /usr/lib/x86_64-linux-gnu/libseccomp.so.2 ] || [ -e /usr/lib/aarch64-linux-gnu/libseccomp.so.2 ] \
  || need_apt+=(libseccomp2)
# As root, a sandbox's private workspace is a loop-mounted ext4 image of `resources.disk` (mkfs.ext4).
if [ "$(id -u)" = 0 ] && [ ! -x /usr/sbin/mkfs.ext4 ] && [ ! -x /sbin/mkfs.ext4 ]; then need_apt+=(e2fsprogs); fi
# The sandbox runs Python as an unprivileged uid: the venv must be built on a Python every uid can read
# (a Python under a 0700 home, such as root's pyenv, is not). Debian's /usr/bin/python3 is.
py=/usr/bin/python3
if [ -x "$py" ] && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  "$py" -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
else
  py=$(command -v python3)
fi
if [ ${#test_missing[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
  echo "note: tests that need ${test_missing[*]} will fail or be skipped; to run them:" \
    "sudo apt-get install ${test_missing[*]}" >&2
elif [ ${#test_missing[@]} -gt 0 ]; then
  need_apt+=("${test_missing[@]}")
fi
# apt's output is shown only when it fails.
quiet_apt() {
  local log; log=$(mktemp)
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; echo "apt-get install $* failed (output above)" >&2; exit 1
  fi
  rm -f "$log"
}
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "==> apt-get install ${need_apt[*]}"
    quiet_apt "${need_apt[@]}"
  else
    echo "missing system packages: ${need_apt[*]} — run: sudo apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
fi

# Sandboxes and the unprivileged tests run the venv's Python as other uids. If this checkout is not
# readable by them (e.g. a clone under root's 0700 home), the venv lives in /opt with a regular install.
editable="-e"
if [ "$(id -u)" = 0 ] && ! setpriv --reuid 65534 --regid 65534 --clear-groups test -r "$PWD/pyproject.toml" 2>/dev/null; then
  editable=""
  venv_home=/opt/jupyter-openshell/venv
  echo "==> $PWD is not readable by other users: venv in $venv_home (non-editable install)"
  mkdir -p "$(dirname "$venv_home")" && chmod 755 "$(dirname "$venv_home")"
  [ -x "$venv_home/bin/python" ] || "$py" -m venv "$venv_home"
  [ -L .venv ] || { rm -rf .venv; ln -s "$venv_home" .venv; }
elif [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $py"
  "$py" -m venv .venv
fi
# npm's and pip's output is shown only when they fail.
quiet() {
  local log; log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; echo "$* failed (output above)" >&2; exit 1
  fi
  rm -f "$log"
}
# The JupyterLab extension (labextension/) is built into labextension/dist before pip installs it; a stamp
# of its sources and lockfile skips the npm install and the build when nothing changed since the last run.
# npm runs no package install scripts (--ignore-scripts): nothing from the registry runs at install time.
ext=labextension
lock_stamp=$(sha256sum <"$ext/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$ext/node_modules/.openshell-stamp" 2>/dev/null)" != "$lock_stamp" ]; then
  echo "==> npm ci in $ext (registry: $(npm config get registry))"
  (cd "$ext" && quiet npm ci --ignore-scripts --no-audit --no-fund)
  echo "$lock_stamp" >"$ext/node_modules/.openshell-stamp"
fi
src_stamp=$(cd "$ext" && find package.json package-lock.json tsconfig.json install.json src style schema -type f \
  -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$ext/dist/.openshell-stamp" 2>/dev/null)" != "$src_stamp" ]; then
  echo "==> building the JupyterLab extension ($ext/dist)"
  rm -rf "$ext/dist" "$ext/lib" "$ext/tsconfig.tsbuildinfo"
  (cd "$ext" && quiet npm run build)
  echo "$src_stamp" >"$ext/dist/.openshell-stamp"
else
  echo "==> JupyterLab extension up to date"
fi

quiet_pip() { quiet .venv/bin/pip install -q --disable-pip-version-check "$@"; }
# Debian's venv brings pip 23, whose resolver backtracks for many minutes over this dependency set.
quiet_pip -U "pip>=24.2"
echo "==> pip install $editable .$extras"
quiet_pip $editable ".$extras"
# An editable install leaves data files out: JupyterLab finds the extension through a link to the build.
if [ -n "$editable" ]; then
  mkdir -p .venv/share/jupyter/labextensions
  ln -sfn "$PWD/$ext/dist" .venv/share/jupyter/labextensions/jupyter-openshell
fi
.venv/bin/python -c 'import jupyter_openshell, mitmproxy' || { echo "install failed" >&2; exit 1; }
# An editable install does not place the package's data files: enable the server extension and install
# the kernelspec into the venv explicitly (idempotent; a regular install has them already).
.venv/bin/jupyter-openshell install --sys-prefix >/dev/null
echo "==> jupyter-openshell ready: $(.venv/bin/openshell --help >/dev/null && echo ok)"
