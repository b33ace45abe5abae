#!/bin/sh
# Runs a program with INFLUX_TOKEN read from the file INFLUX_TOKEN_FILE names: for programs
# that take the token only from their environment (Grafana's data-source provisioning), so the
# token is handed over as a file like the Python services' and never appears in compose.
set -eu
INFLUX_TOKEN="$(cat "${INFLUX_TOKEN_FILE:?the file holding the token}")"
export INFLUX_TOKEN
unset INFLUX_TOKEN_FILE
exec "$@"
