#!/usr/bin/env bash
# Set-up of this checkout; cheap when already done. One argument, the profile:
#   deploy  what `make deploy` runs: Python >= 3.11; .venv gets the `deploy` dependency group
#           only (ansible and kubernetes.core's libraries), added to whatever .venv holds already
#   dev     `make setup` (the default): Python >= 3.11 and git; .venv gets every group (linters,
#           Molecule, the test harness, the services)
#   test    `make test` / `make prepare`: dev, and Go >= 1.26 first (the set-up step builds
#           FerretDB, the Kubernetes control plane and istiod from Go modules)
# Then the Ansible collections of collections/requirements.yml: from Galaxy when reachable,
# otherwise from the copies inside the pinned `ansible` package (tools/check_collections.py).
#
# Portable: bash 3.2 and the tools a stock macOS and a stock Debian both have; hashing and
# time limits are done in Python (no sha256sum, no timeout).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9 # pinned: newest uv on PyPI on 2026-11-26
GO_MINIMUM_MINOR=26 # Go 1.26: Kubernetes v1.36.3's go.mod (tools/controlplane)
CACHE="${STACK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/gateway-api-stack}"
PYTHON="${PYTHON:-python3}"

profile="${1:-dev}"
case "$profile" in
  deploy | dev | test) ;;
  *)
    echo "setup: unknown profile '$profile' (one of: deploy, dev, test)" >&2
    exit 2
    ;;
esac

missing=()
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  missing+=("Python >= 3.11 ($PYTHON not found)")
elif ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  missing+=("Python >= 3.11 ($PYTHON is $("$PYTHON" -V 2>&1))")
fi
if [[ "$profile" != deploy ]]; then
  command -v git >/dev/null 2>&1 || missing+=("git")
fi
if [[ "$profile" == test ]]; then
  go_hint="builds FerretDB, the Kubernetes v1.36 control plane and istiod for the tests; https://go.dev/doc/install"
  if ! command -v go >/dev/null 2>&1; then
    missing+=("Go >= 1.$GO_MINIMUM_MINOR (no \`go\` on PATH; $go_hint)")
  else
    go_found=$(go env GOVERSION 2>/dev/null || true)
    if [[ "$go_found" =~ ^go1\.([0-9]+) ]]; then
      if ((BASH_REMATCH[1] < GO_MINIMUM_MINOR)); then
        missing+=("Go >= 1.$GO_MINIMUM_MINOR (found $go_found; $go_hint)")
      fi
    else
      missing+=("Go >= 1.$GO_MINIMUM_MINOR (\`go env GOVERSION\` printed '${go_found}'; $go_hint)")
    fi
  fi
fi
if ((${#missing[@]})); then
  echo "setup ($profile): missing prerequisites:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

uv="$CACHE/bootstrap/bin/uv"
if [[ ! -x "$uv" ]] || [[ "$("$uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
  echo "setup: installing uv $UV_VERSION into $CACHE/bootstrap"
  if ! "$PYTHON" -m venv "$CACHE/bootstrap"; then
    echo "setup: \`$PYTHON -m venv\` failed; install Python's venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
  "$CACHE/bootstrap/bin/pip" install --quiet "uv==$UV_VERSION"
fi
# --compile-bytecode: every Ansible kubernetes.core task imports the `kubernetes` client afresh
# (about 2 s without .pyc files, 0.8 s with); where PYTHONDONTWRITEBYTECODE is set nothing else
# would write them. Warm, the compile step is a check of about a second.
if [[ "$profile" == deploy ]]; then
  # --inexact: a .venv that a dev set-up filled keeps its test tools.
  "$uv" sync --locked --compile-bytecode --python "$PYTHON" --quiet \
    --no-default-groups --group deploy --inexact
else
  "$uv" sync --locked --compile-bytecode --python "$PYTHON" --quiet
fi
echo "setup ($profile): .venv in sync with uv.lock ($(.venv/bin/ansible --version 2>/dev/null | sed -n 1p))"

# Ansible collections. ansible.cfg puts Galaxy installs in collections/installed and also scans
# the venv's site-packages, where the `ansible` package keeps its bundled collections.
.venv/bin/python tools/check_collections.py --install collections/requirements.yml
