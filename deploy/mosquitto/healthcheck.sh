#!/bin/sh
# Docker healthcheck: an authenticated QoS 1 publish must be acknowledged by the broker.
# The svc.health password is generated per container start by entrypoint.sh.
set -eu
run_dir="${MOSQUITTO_RUN_DIR:-/mosquitto/run}"
exec mosquitto_pub -h "${MOSQUITTO_HEALTH_HOST:-127.0.0.1}" -p "${MOSQUITTO_HEALTH_PORT:-1883}" \
  -i "healthcheck-$$" -u svc.health -P "$(cat "$run_dir/health.pw")" \
  -q 1 -t "$(cat "$run_dir/prefix")/health/broker" -m ok
