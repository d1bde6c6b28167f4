#!/usr/bin/env bash
# Installs the OFFICIAL SDKs that tests/test_conformance.py drives against the local emulator,
# each in its own place so their pins stay theirs (neither touches the project's .venv):
#   tests/conformance/.venv-official  createos-sandbox (PyPI, import `createos`)
#   tests/conformance/node_modules    @nodeops-createos/sandbox (npm, locked by package-lock.json)
# Idempotent and quick: does nothing when both are already installed at the pinned versions.
# Needs python3 (>= 3.10, with venv) and node >= 20 + npm. Versions below are the ones tested.
set -euo pipefail
cd "$(dirname "$0")"

PY_SDK_VERSION="0.1.3"
TS_SDK_VERSION="0.7.1"   # keep in sync with package.json / package-lock.json
PYTHON="${PYTHON:-python3}"

have_py_sdk() {
  [ -x .venv-official/bin/python ] && .venv-official/bin/python - "$PY_SDK_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata, sys
sys.exit(importlib.metadata.version("createos-sandbox") != sys.argv[1])
EOF
}

have_ts_sdk() {
  node -e 'const [p, v] = process.argv.slice(1);
           process.exit(require(p).version === v ? 0 : 1)' \
    "$PWD/node_modules/@nodeops-createos/sandbox/package.json" "$TS_SDK_VERSION" 2>/dev/null
}

if have_py_sdk; then
  echo "conformance: createos-sandbox $PY_SDK_VERSION already installed"
else
  [ -x .venv-official/bin/python ] || "$PYTHON" -m venv .venv-official
  .venv-official/bin/python -m pip install -q --disable-pip-version-check \
    "createos-sandbox==$PY_SDK_VERSION"
  have_py_sdk
fi

command -v node >/dev/null && command -v npm >/dev/null || {
  echo "conformance: node >= 20 and npm are required (apt-get install nodejs npm)" >&2
  exit 1
}
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || {
  echo "conformance: node $(node --version) is too old; the official TS SDK needs node >= 20" >&2
  exit 1
}
if have_ts_sdk; then
  echo "conformance: @nodeops-createos/sandbox $TS_SDK_VERSION already installed"
else
  npm ci --no-audit --no-fund --loglevel=error
  have_ts_sdk
fi
