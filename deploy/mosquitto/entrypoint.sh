#!/bin/sh
# Generates Mosquitto's password files, ACL and TLS listener from the environment, then starts
# the broker.
#
# Runs at every container start (POSIX sh: the eclipse-mosquitto image is Alpine), so changing
# a password in .env and restarting the container rotates it. Nothing secret is stored in the
# image or the repository; the generated files live in the container, readable by mosquitto only.
#
#   MQTT_INGEST_PASSWORD      required  user svc.ingest
#   MQTT_ALERTS_PASSWORD      required  user svc.alerts
#   MQTT_INGEST_REPLICA_CREDENTIALS  optional  "svc.ingest.2:password ..." one user per extra
#                             replica of a shared ingest group (same ACL as svc.ingest)
#   MQTT_SIMULATOR_PASSWORD   optional  user svc.simulator (demo profile; listener 1884 only)
#   MQTT_OPERATOR_PASSWORD    optional  user svc.operator (read-only troubleshooting)
#   MQTT_BRIDGE_PASSWORD      optional  user svc.bridge (bridge profile: registered devices'
#                             telemetry and its own dead letters only)
#   MQTT_DEVICE_CREDENTIALS   optional  "device_id:password ..." (space or comma separated)
#   MQTT_DEVICE_CREDENTIALS_FILE  optional  file of "device_id:password" lines
#                                 (default /run/secrets/mqtt_device_credentials, if present)
#   MQTT_TOPIC_PREFIX         default facility; substituted into the ACL
#   MQTT_TLS_DIR              default /mosquitto/tls; with server.crt and server.key (and ca.crt)
#                             there, a TLS listener on 8883 is enabled (conf.d/tls.conf)
#
# The ACL (deploy/mosquitto/acl) is generated from config/devices.yaml by `make acl`; a device
# with credentials but no block there can log in and do nothing (a warning says so).
set -eu

run_dir="${MOSQUITTO_RUN_DIR:-/mosquitto/run}"
acl_template="${MOSQUITTO_ACL_TEMPLATE:-/mosquitto/config/acl}"
prefix="${MQTT_TOPIC_PREFIX:-facility}"
device_file="${MQTT_DEVICE_CREDENTIALS_FILE:-/run/secrets/mqtt_device_credentials}"
tls_dir="${MQTT_TLS_DIR:-/mosquitto/tls}"

fail() { echo "mosquitto-entrypoint: $*" >&2; exit 2; }

case "$prefix" in
  ''|*'+'*|*'#'*|'$'*|/*|*/|*//*|*'|'*|*'&'*|*'\'*) fail "MQTT_TOPIC_PREFIX: invalid prefix '$prefix'" ;;
esac

mkdir -p "$run_dir"
umask 077
passwd_file="$run_dir/passwd"
: > "$passwd_file.new"
# Listener 1884 (the simulator's) has its own password file: only svc.simulator, if any.
: > "$run_dir/passwd-simulator.new"

add_user() {  # add_user NAME PASSWORD VARIABLE [FILE]
  [ -n "$2" ] || fail "$3: empty password for $1"
  mosquitto_passwd -b "${4:-$passwd_file.new}" "$1" "$2" >/dev/null || fail "$3: mosquitto_passwd failed for $1"
}

[ -n "${MQTT_INGEST_PASSWORD:-}" ] || fail "MQTT_INGEST_PASSWORD: not set (run 'make env')"
[ -n "${MQTT_ALERTS_PASSWORD:-}" ] || fail "MQTT_ALERTS_PASSWORD: not set (run 'make env')"
add_user svc.ingest "$MQTT_INGEST_PASSWORD" MQTT_INGEST_PASSWORD
add_user svc.alerts "$MQTT_ALERTS_PASSWORD" MQTT_ALERTS_PASSWORD
[ -z "${MQTT_SIMULATOR_PASSWORD:-}" ] || add_user svc.simulator "$MQTT_SIMULATOR_PASSWORD" MQTT_SIMULATOR_PASSWORD "$run_dir/passwd-simulator.new"
# The broker names a session after its user (use_username_as_clientid): replicas of a shared
# ingest group each need their own user, or they would keep taking each other's session.
replicas=""
for entry in $(printf '%s' "${MQTT_INGEST_REPLICA_CREDENTIALS:-}" | tr ',' ' '); do
  name="${entry%%:*}"
  [ "$name" != "$entry" ] || fail "MQTT_INGEST_REPLICA_CREDENTIALS: entry without ':' (want svc.ingest.N:password)"
  printf '%s' "$name" | grep -Eq '^svc\.ingest\.[0-9]{1,3}$' || fail "MQTT_INGEST_REPLICA_CREDENTIALS: invalid user '$name' (want svc.ingest.N)"
  add_user "$name" "${entry#*:}" MQTT_INGEST_REPLICA_CREDENTIALS
  replicas="$replicas $name"
done
[ -z "${MQTT_OPERATOR_PASSWORD:-}" ] || add_user svc.operator "$MQTT_OPERATOR_PASSWORD" MQTT_OPERATOR_PASSWORD
[ -z "${MQTT_BRIDGE_PASSWORD:-}" ] || add_user svc.bridge "$MQTT_BRIDGE_PASSWORD" MQTT_BRIDGE_PASSWORD
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
  grep -qx "user $id" "$acl_template" ||
    echo "mosquitto-entrypoint: warning: device '$id' has credentials but no topics in the ACL (add it to config/devices.yaml, run 'make acl')" >&2
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
# Each ingest replica user gets a copy of the svc.ingest block (up to its first blank line).
ingest_rules="$(sed -n "/^user svc\.ingest\$/,/^\$/p" "$run_dir/acl.new" | sed -e '1d' -e '/^$/d')"
for name in $replicas; do
  printf '\n# ingest replica (MQTT_INGEST_REPLICA_CREDENTIALS)\nuser %s\n%s\n' "$name" "$ingest_rules" >> "$run_dir/acl.new"
done

# MQTT over TLS on 8883: same users and ACL as 1883, enabled by a mounted server certificate.
mkdir -p "$run_dir/conf.d"
rm -f "$run_dir/conf.d/tls.conf"
tls="off"
if [ -f "$tls_dir/server.crt" ] && [ -f "$tls_dir/server.key" ]; then
  mkdir -p "$run_dir/tls"
  cp "$tls_dir/server.crt" "$tls_dir/server.key" "$run_dir/tls/"
  {
    echo "# Generated by entrypoint.sh from $tls_dir: MQTT over TLS, same users and ACL as 1883."
    echo "listener 8883"
    echo "protocol mqtt"
    echo "allow_anonymous false"
    echo "password_file $run_dir/passwd"
    echo "acl_file $run_dir/acl"
    echo "use_username_as_clientid true"
    echo "max_connections 1000"
    echo "certfile $run_dir/tls/server.crt"
    echo "keyfile $run_dir/tls/server.key"
    echo "tls_version tlsv1.2"
    if [ -f "$tls_dir/ca.crt" ]; then
      cp "$tls_dir/ca.crt" "$run_dir/tls/"
      echo "cafile $run_dir/tls/ca.crt"
    fi
  } > "$run_dir/conf.d/tls.conf"
  tls="on (8883)"
fi

mv "$passwd_file.new" "$passwd_file"
mv "$run_dir/passwd-simulator.new" "$run_dir/passwd-simulator"
mv "$run_dir/acl.new" "$run_dir/acl"
mv "$run_dir/health.pw.new" "$run_dir/health.pw"
mv "$run_dir/prefix.new" "$run_dir/prefix"
# mosquitto drops root privileges before reading these files.
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown -R mosquitto:mosquitto "$run_dir"
fi
echo "mosquitto-entrypoint: $(wc -l < "$passwd_file" | tr -d ' ') users ($devices devices), topic prefix '$prefix', TLS $tls"

# The image's own entrypoint fixes ownership of /mosquitto and execs the broker.
if [ "$#" -eq 0 ]; then
  set -- /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf
fi
if [ -x /docker-entrypoint.sh ]; then
  exec /docker-entrypoint.sh "$@"
fi
exec "$@"
