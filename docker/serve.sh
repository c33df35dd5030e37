#!/bin/sh
# Entry point of the policy-server image: `openpi-serve` configured from the environment.
#   OPENPI_CONFIG       training config name (pi05_droid, pi0_aloha, ... or your own); required
#   OPENPI_CHECKPOINT   checkpoint folder (params/ + assets/), local or gs://; default /checkpoint (a mounted volume)
#   OPENPI_PORT         default 8000;  OPENPI_HOST default 0.0.0.0 (the container's own interfaces)
#   OPENPI_DEFAULT_PROMPT, OPENPI_SERVER_API_KEY (clients must then send it)
# Further arguments go to openpi-serve (e.g. --num-steps 5).
set -eu
if [ -z "${OPENPI_CONFIG:-}" ]; then
  echo "error: set OPENPI_CONFIG to the checkpoint's training config (e.g. pi05_droid)" >&2
  exit 2
fi
set -- --config "$OPENPI_CONFIG" --checkpoint "${OPENPI_CHECKPOINT:-/checkpoint}" \
  --host "${OPENPI_HOST:-0.0.0.0}" --port "${OPENPI_PORT:-8000}" "$@"
if [ -n "${OPENPI_DEFAULT_PROMPT:-}" ]; then
  set -- --default-prompt "$OPENPI_DEFAULT_PROMPT" "$@"
fi
exec openpi-serve "$@"
