#!/usr/bin/env bash
# One-command setup on a bare Debian 12 / Python 3.11 machine (or any Debian/Ubuntu with python3.11).
# Idempotent: every step records a stamp (hash of its inputs) under .venv/.openpi-stamps and is skipped when
# nothing changed, so a second run takes seconds.
#
#   scripts/setup.sh            apt packages, .venv, pinned deps, openpi_msgs build, editable openpi_core/openpi_ros
#   PYTHON=python3.12 scripts/setup.sh   use another interpreter (3.11+)
#   OPENPI_SKIP_APT=1 scripts/setup.sh   never call apt-get (you installed the packages listed below yourself)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
STAMPS="$VENV/.openpi-stamps"
PYTHON="${PYTHON:-python3.11}"
APT_PACKAGES=(cmake g++ make ffmpeg libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 python3-venv)
T0=$SECONDS

log() { printf '\033[1m[setup %3ds]\033[0m %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" >"$STAMPS/$1"; }
# pip prints one warning per package for the machine's local mirror folders that lack it; keep real output.
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2>&1 | grep -v "^WARNING: Location '.*' is ignored" || return "${PIPESTATUS[0]}"; }

# 1. System packages -------------------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  [[ "${OPENPI_SKIP_APT:-0}" == 1 ]] && die "missing apt packages: ${missing[*]} (OPENPI_SKIP_APT=1 is set)"
  SUDO=""
  if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    SUDO=sudo
  fi
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Virtualenv ------------------------------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11+ or set PYTHON=..."
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11"
if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV"
fi
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"

# 3. Pinned dependencies ---------------------------------------------------------------------------------------
DEPS_HASH="$(hash_of requirements/pins.txt requirements/lock.txt requirements/nodeps.txt)-$("$VENV/bin/python" -V)"
if ! stamp_ok deps "$DEPS_HASH"; then
  log "installing pinned dependencies (first run: about 2-3 min, about 9.5 GB)"
  quiet_pip install -q --upgrade "pip>=25"
  quiet_pip install -q -r requirements/pins.txt -c requirements/lock.txt
  quiet_pip install -q --no-deps -r requirements/nodeps.txt
  # The ROS msg wheels' exported CMake files name the wheel builder's Python include dirs; point them at ours.
  PYINC="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  NPINC="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  # (already patched on a re-run: grep then finds nothing, which is fine)
  { grep -rlZ --include='*.cmake' '/opt/python/cp3[0-9]*-cp3[0-9]*/' "$VENV/share" 2>/dev/null || true; } | xargs -0 -r sed -i -E \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$PYINC#g" \
    -e "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$NPINC#g"
  stamp_set deps "$DEPS_HASH"
  rm -f "$STAMPS/msgs"  # rebuild the interfaces against the new dependencies
fi

# 4. openpi_msgs (rosidl interfaces) built with plain CMake into the venv prefix ----------------------------------
MSGS_HASH="$(hash_of openpi_msgs/CMakeLists.txt openpi_msgs/package.xml openpi_msgs/msg/* openpi_msgs/srv/*)"
if ! stamp_ok msgs "$MSGS_HASH" || ! "$VENV/bin/python" -c 'import openpi_msgs.msg' 2>/dev/null; then
  log "building openpi_msgs"
  rm -rf build/openpi_msgs && mkdir -p build
  export AMENT_PREFIX_PATH="$VENV"
  cmake -S openpi_msgs -B build/openpi_msgs -DCMAKE_INSTALL_PREFIX="$VENV" -DBUILD_TESTING=OFF \
    -DPython3_EXECUTABLE="$VENV/bin/python" >build/openpi_msgs.log 2>&1 || { tail -30 build/openpi_msgs.log; die "cmake configure of openpi_msgs failed (log: build/openpi_msgs.log)"; }
  cmake --build build/openpi_msgs -j"$(nproc)" >>build/openpi_msgs.log 2>&1 || { tail -30 build/openpi_msgs.log; die "openpi_msgs build failed (log: build/openpi_msgs.log)"; }
  cmake --install build/openpi_msgs >>build/openpi_msgs.log 2>&1 || die "openpi_msgs install failed (log: build/openpi_msgs.log)"
  "$VENV/bin/python" -c 'from openpi_msgs.msg import ActionChunk; from openpi_msgs.srv import SetPrompt' \
    || die "openpi_msgs built but does not import"
  stamp_set msgs "$MSGS_HASH"
fi

# 5. The project's own packages, editable, and the example robot plugin (README "Bring your own arm") ------------
PKG_HASH="$(hash_of pyproject.toml openpi_ros/setup.py openpi_ros/setup.cfg openpi_ros/package.xml \
  examples/ur5e_lift/pyproject.toml; ls launch)"
if ! stamp_ok packages "$PKG_HASH" || ! "$VENV/bin/python" -c 'import openpi_core, openpi_ros, openpi_ur5e_lift' 2>/dev/null; then
  log "installing openpi_core, openpi_ros and the ur5e_lift example plugin (editable)"
  quiet_pip install -q --no-deps --no-build-isolation -e . -e ./openpi_ros -e ./examples/ur5e_lift
  stamp_set packages "$PKG_HASH"
fi

# 6. openpi's published client in its own venv (it needs numpy<2); the serving tests talk to our server with it ----
CLIENT_VENV="$ROOT/.venv-client"
CLIENT_HASH="$(hash_of requirements/openpi-client.txt)-$("$PYTHON" -V)"
if ! stamp_ok client "$CLIENT_HASH" || ! "$CLIENT_VENV/bin/python" -c 'import openpi_client' 2>/dev/null; then
  log "installing openpi-client into .venv-client"
  rm -rf "$CLIENT_VENV"
  "$PYTHON" -m venv "$CLIENT_VENV"
  "$CLIENT_VENV/bin/python" -m pip install -q -r requirements/openpi-client.txt 2>&1 \
    | grep -v "^WARNING: Location '.*' is ignored" || true
  "$CLIENT_VENV/bin/python" -c 'from openpi_client import websocket_client_policy' \
    || die "openpi-client did not install into .venv-client"
  stamp_set client "$CLIENT_HASH"
fi

log "ready: $("$VENV/bin/python" -V), .venv $(du -sh "$VENV" 2>/dev/null | cut -f1)"
