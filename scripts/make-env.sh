#!/usr/bin/env bash
# Writes .env from .env.example with a fresh random secret in every empty *_PASSWORD/*_TOKEN/
# *_SECRET.
# Refuses to overwrite an existing .env (it holds the secrets the data volumes were set up with).
# Also makes the broker's TLS certificates (a private CA and a server certificate it signs) in
# secrets/mqtt-tls beside the .env, unless a server.crt and server.key are already there.
#   MQTT_TLS_SAN  names devices use to reach the broker (default DNS:localhost,DNS:mosquitto,
#                 IP:127.0.0.1), e.g. MQTT_TLS_SAN=DNS:broker.example.org,IP:10.0.0.5 make env
set -euo pipefail
cd "$(dirname "$0")/.."
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

mv "$tmp" "$target"
trap - EXIT
echo "make-env: wrote $target with $filled random secrets (mode 600); keep it out of git"
