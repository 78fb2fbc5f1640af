#!/usr/bin/env bash
# Set-up for `make test` and `make demo` on a fresh machine; cheap when already done.
#  1. checks the prerequisites (Python >= 3.11, Go >= 1.26) and names what is missing;
#  2. installs uv (pinned) into the cache and syncs .venv from uv.lock;
#  3. makes the Ansible collections of collections/requirements.yml available: from Galaxy
#     when reachable, otherwise from the copies inside the pinned `ansible` package.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9 # pinned: newest uv on PyPI on 2026-11-26
CACHE="${STACK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gateway-api-stack}"
PYTHON="${PYTHON:-python3}"

missing=()
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  missing+=("Python >= 3.11 ($PYTHON not found)")
elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  missing+=("Python >= 3.11 ($PYTHON is $("$PYTHON" -V 2>&1))")
fi
go_minor=$(go env GOVERSION 2>/dev/null | sed -nE 's/^go1\.([0-9]+).*/\1/p')
if [[ -z "$go_minor" ]]; then
  missing+=("Go >= 1.26 (builds FerretDB and the Kubernetes v1.36 control plane the tests run)")
elif ((go_minor < 26)); then
  missing+=("Go >= 1.26 (found $(go env GOVERSION); Kubernetes v1.36.3 needs go 1.26)")
fi
for tool in git make; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "setup: missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

uv="$CACHE/bootstrap/bin/uv"
if [[ ! -x "$uv" ]] || [[ "$("$uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
  echo "setup: installing uv $UV_VERSION into $CACHE/bootstrap"
  "$PYTHON" -m venv "$CACHE/bootstrap"
  "$CACHE/bootstrap/bin/pip" install --quiet "uv==$UV_VERSION"
fi
# --compile-bytecode: every Ansible kubernetes.core task imports the `kubernetes` client afresh
# (about 2 s without .pyc files, 0.8 s with); where PYTHONDONTWRITEBYTECODE is set nothing else
# would write them. Warm, the compile step is a check of about a second.
"$uv" sync --locked --compile-bytecode --python "$PYTHON" --quiet
echo "setup: .venv in sync with uv.lock ($(.venv/bin/ansible --version 2>/dev/null | sed -n 1p))"

# Ansible collections. ansible.cfg puts Galaxy installs in collections/installed and also scans
# the venv's site-packages, where the `ansible` package keeps its bundled collections.
stamp=".venv/.collections-$(sha256sum collections/requirements.yml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  if timeout 60 .venv/bin/ansible-galaxy collection install --force -r collections/requirements.yml \
      -p collections/installed >/tmp/galaxy.$$.log 2>&1; then
    echo "setup: collections installed from Galaxy into collections/installed"
  else
    echo "setup: Galaxy is unreachable; using the collections bundled in the pinned ansible package"
  fi
  rm -f /tmp/galaxy.$$.log
  .venv/bin/python tools/check_collections.py collections/requirements.yml
  touch "$stamp"
fi
