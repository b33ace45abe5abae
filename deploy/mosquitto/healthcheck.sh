#!/bin/sh
# Docker healthcheck: an authenticated QoS 1 publish must be acknowledged by the broker.
# The svc.health password is generated per container start by entrypoint.sh.
#
# Each such check logs three lines (connect, login, disconnect); every 10 s that was ~26k
# lines a day. So the full check runs at most every MOSQUITTO_HEALTH_FULL_EVERY_S (300 s);
# in between, the check is that the listener is still open (LISTEN in /proc/net/tcp*), which
# logs nothing. A failing check never counts as the last full one.
set -eu
run_dir="${MOSQUITTO_RUN_DIR:-/mosquitto/run}"
port="${MOSQUITTO_HEALTH_PORT:-1883}"
every="${MOSQUITTO_HEALTH_FULL_EVERY_S:-300}"
stamp="$run_dir/health.last"

now="$(date +%s)"
last="$(cat "$stamp" 2>/dev/null || echo 0)"
if [ $((now - last)) -lt "$every" ]; then
  hex="$(printf '%04X' "$port")"
  if cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
    awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }'; then
    exit 0
  fi
  echo "healthcheck: nothing listens on port $port" >&2
  exit 1
fi
mosquitto_pub -h "${MOSQUITTO_HEALTH_HOST:-127.0.0.1}" -p "$port" \
  -i "healthcheck-$$" -u svc.health -P "$(cat "$run_dir/health.pw")" \
  -q 1 -t "$(cat "$run_dir/prefix")/health/broker" -m ok
printf '%s\n' "$now" > "$stamp"
