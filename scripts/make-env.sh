#!/usr/bin/env bash
# Writes .env from .env.example with a fresh random secret in every empty *_PASSWORD/*_TOKEN/
# *_SECRET - except the demo-only and optional users' passwords, which stay empty (so the broker
# has no such user) unless asked for:
#   --demo      MQTT_SIMULATOR_PASSWORD (svc.simulator, the demo profile's simulated city)
#   --operator  MQTT_OPERATOR_PASSWORD (svc.operator, read-only troubleshooting)
#   --bridge    MQTT_BRIDGE_PASSWORD (svc.bridge, the bridge profile's facility-bridge), and
#               the empty secrets/bridge folder for its source brokers' passwords
# Refuses to overwrite an existing .env (it holds the secrets the data volumes were set up with).
# Also makes the broker's TLS certificates (a private CA and a server certificate it signs) in
# secrets/mqtt-tls beside the .env, unless a server.crt and server.key are already there.
#   MQTT_TLS_SAN  names devices use to reach the broker (default DNS:localhost,DNS:mosquitto,
#                 IP:127.0.0.1), e.g. MQTT_TLS_SAN=DNS:broker.example.org,IP:10.0.0.5 make env
set -euo pipefail
cd "$(dirname "$0")/.."
demo=0
operator=0
bridge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --demo) demo=1 ;;
    --operator) operator=1 ;;
    --bridge) bridge=1 ;;
    -*) echo "make-env: unknown option $1 (want --demo, --operator, --bridge, then the target file)" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
target="${1:-.env}"
if [ -e "$target" ]; then
  echo "make-env: $target already exists; not overwriting it (delete it first to start over)" >&2
  exit 1
fi

secret() {  # 48 hex characters = 192 random bits
  if command -v openssl >/dev/null 2>&1; then
    openssl rand -hex 24
  else
    python3 -c 'import secrets; print(secrets.token_hex(24))'
  fi
}

umask 077
tmp="$(mktemp "$target.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
filled=0
while IFS= read -r line || [ -n "$line" ]; do
  case "$line" in
    MQTT_SIMULATOR_PASSWORD=) [ "$demo" -eq 1 ] && { line="$line$(secret)"; filled=$((filled + 1)); } ;;
    MQTT_OPERATOR_PASSWORD=) [ "$operator" -eq 1 ] && { line="$line$(secret)"; filled=$((filled + 1)); } ;;
    MQTT_BRIDGE_PASSWORD=) [ "$bridge" -eq 1 ] && { line="$line$(secret)"; filled=$((filled + 1)); } ;;
    [A-Z]*_PASSWORD= | [A-Z]*_TOKEN= | [A-Z]*_SECRET=)
      line="$line$(secret)"
      filled=$((filled + 1))
      ;;
  esac
  printf '%s\n' "$line"
done < .env.example > "$tmp"

mqtt_tls() {  # mqtt_tls DIR: CA + server certificate for the broker's 8883 listener
  local dir="$1" san="${MQTT_TLS_SAN:-DNS:localhost,DNS:mosquitto,IP:127.0.0.1}"
  if [ -f "$dir/server.crt" ] && [ -f "$dir/server.key" ]; then
    echo "make-env: keeping the MQTT TLS certificate in $dir"
    return
  fi
  if ! command -v openssl >/dev/null 2>&1; then
    echo "make-env: openssl not found; no MQTT TLS certificate made (listener 8883 stays off)" >&2
    return
  fi
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=facility-monitor MQTT CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=facility-monitor broker" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > "$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 825 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
  rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
  echo "make-env: wrote the MQTT TLS CA and server certificate ($san) to $dir; give devices ca.crt"
}
mqtt_tls "$(dirname "$target")/secrets/mqtt-tls"
# The bridge's SECRETS_DIR (BRIDGE_SECRETS_DIR): a source broker's password_secret is a file
# here. 711: the bridge (uid 10001) may open a file it is given, not list the folder.
if [ "$bridge" -eq 1 ]; then
  mkdir -p "$(dirname "$target")/secrets/bridge"
  chmod 711 "$(dirname "$target")/secrets/bridge"
fi

# The containers read the bind-mounted files as their own users (grafana 472, mosquitto 1883,
# facility 10001): a checkout made under umask 077 hides them ("permission denied" at start).
unreadable="$(find grafana/provisioning grafana/dashboards config deploy \( -type f ! -perm -o=r \) -o \( -type d ! -perm -o=rx \) 2>/dev/null | head -n 5)"
if [ -n "$unreadable" ]; then
  echo "make-env: warning: the containers cannot read these bind-mounted files (umask 077 checkout?):" >&2
  printf '  %s\n' $unreadable >&2
  echo "make-env: fix with: chmod -R a+rX grafana/provisioning grafana/dashboards config deploy" >&2
fi

mv "$tmp" "$target"
trap - EXIT
echo "make-env: wrote $target with $filled random secrets (mode 600); keep it out of git"
