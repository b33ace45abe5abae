#!/bin/sh
# Generates Mosquitto's password file and ACL from the environment, then starts the broker.
#
# Runs at every container start (POSIX sh: the eclipse-mosquitto image is Alpine), so changing
# a password in .env and restarting the container rotates it. Nothing secret is stored in the
# image or the repository; the generated files live in the container, readable by mosquitto only.
#
#   MQTT_INGEST_PASSWORD      required  user svc.ingest
#   MQTT_ALERTS_PASSWORD      required  user svc.alerts
#   MQTT_SIMULATOR_PASSWORD   optional  user svc.simulator (demo profile)
#   MQTT_OPERATOR_PASSWORD    optional  user svc.operator (read-only troubleshooting)
#   MQTT_DEVICE_CREDENTIALS   optional  "device_id:password ..." (space or comma separated)
#   MQTT_DEVICE_CREDENTIALS_FILE  optional  file of "device_id:password" lines
#                                 (default /run/secrets/mqtt_device_credentials, if present)
#   MQTT_TOPIC_PREFIX         default facility; substituted into the ACL
set -eu

run_dir="${MOSQUITTO_RUN_DIR:-/mosquitto/run}"
acl_template="${MOSQUITTO_ACL_TEMPLATE:-/mosquitto/config/acl}"
prefix="${MQTT_TOPIC_PREFIX:-facility}"
device_file="${MQTT_DEVICE_CREDENTIALS_FILE:-/run/secrets/mqtt_device_credentials}"

fail() { echo "mosquitto-entrypoint: $*" >&2; exit 2; }

case "$prefix" in
  ''|*'+'*|*'#'*|'$'*|/*|*/|*//*|*'|'*|*'&'*|*'\'*) fail "MQTT_TOPIC_PREFIX: invalid prefix '$prefix'" ;;
esac

mkdir -p "$run_dir"
umask 077
passwd_file="$run_dir/passwd"
: > "$passwd_file.new"

add_user() {  # add_user NAME PASSWORD VARIABLE
  [ -n "$2" ] || fail "$3: empty password for $1"
  mosquitto_passwd -b "$passwd_file.new" "$1" "$2" >/dev/null || fail "$3: mosquitto_passwd failed for $1"
}

[ -n "${MQTT_INGEST_PASSWORD:-}" ] || fail "MQTT_INGEST_PASSWORD: not set (run 'make env')"
[ -n "${MQTT_ALERTS_PASSWORD:-}" ] || fail "MQTT_ALERTS_PASSWORD: not set (run 'make env')"
add_user svc.ingest "$MQTT_INGEST_PASSWORD" MQTT_INGEST_PASSWORD
add_user svc.alerts "$MQTT_ALERTS_PASSWORD" MQTT_ALERTS_PASSWORD
[ -z "${MQTT_SIMULATOR_PASSWORD:-}" ] || add_user svc.simulator "$MQTT_SIMULATOR_PASSWORD" MQTT_SIMULATOR_PASSWORD
[ -z "${MQTT_OPERATOR_PASSWORD:-}" ] || add_user svc.operator "$MQTT_OPERATOR_PASSWORD" MQTT_OPERATOR_PASSWORD
# The container healthcheck (healthcheck.sh) logs in with a throwaway password made here.
health_password="$(tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 32)"
add_user svc.health "$health_password" health
printf '%s\n' "$health_password" > "$run_dir/health.pw.new"
printf '%s\n' "$prefix" > "$run_dir/prefix.new"

add_device() {  # add_device "id:password" SOURCE
  id="${1%%:*}"
  password="${1#*:}"
  [ "$id" != "$1" ] || fail "$2: entry without ':' (want device_id:password)"
  # The ACL binds a device to topics named after its username: only valid device ids.
  printf '%s' "$id" | grep -Eq '^[a-z0-9][a-z0-9_-]{0,63}$' || fail "$2: invalid device id '$id'"
  add_user "$id" "$password" "$2"
}

devices=0
for entry in $(printf '%s' "${MQTT_DEVICE_CREDENTIALS:-}" | tr ',' ' '); do
  add_device "$entry" MQTT_DEVICE_CREDENTIALS
  devices=$((devices + 1))
done
if [ -f "$device_file" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|'#'*) continue ;; esac
    add_device "$line" MQTT_DEVICE_CREDENTIALS_FILE
    devices=$((devices + 1))
  done < "$device_file"
fi

# The ACL is written for the default prefix; rewrite topic lines for another one.
sed -e "s|^\(topic [a-z]* \)facility/|\1$prefix/|" -e "s|^\(pattern [a-z]* \)facility/|\1$prefix/|" \
  "$acl_template" > "$run_dir/acl.new"

mv "$passwd_file.new" "$passwd_file"
mv "$run_dir/acl.new" "$run_dir/acl"
mv "$run_dir/health.pw.new" "$run_dir/health.pw"
mv "$run_dir/prefix.new" "$run_dir/prefix"
# mosquitto drops root privileges before reading these files.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown -R mosquitto:mosquitto "$run_dir"
fi
echo "mosquitto-entrypoint: $(wc -l < "$passwd_file" | tr -d ' ') users ($devices devices), topic prefix '$prefix'"

# The image's own entrypoint fixes ownership of /mosquitto and execs the broker.
if [ "$#" -eq 0 ]; then
  set -- /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf
fi
if [ -x /docker-entrypoint.sh ]; then
  exec /docker-entrypoint.sh "$@"
fi
exec "$@"
