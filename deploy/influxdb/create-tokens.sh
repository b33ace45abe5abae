#!/bin/sh
# Gives each service of the compose stack its own scoped InfluxDB token, so none holds the admin
# token: ingest and alerts may only write to the bucket, Grafana and the simulator's verify may
# only read it. Run by the one-shot `influxdb-init` service (influx CLI of the influxdb image)
# after InfluxDB's setup, at every `docker compose up`:
#   - a token file that exists and that InfluxDB still knows is kept (the services restart
#     with the same token);
#   - a missing or unknown one (e.g. a fresh influxdb-data volume) is created and written to
#     $TOKENS_DIR/<service>/influx_token, mode 600, owned by the uid that service runs as.
# The influx CLI reads INFLUX_HOST, INFLUX_TOKEN (the admin token) and INFLUX_ORG from the
# environment; INFLUX_USER (the admin user) owns the tokens, their permissions scope them.
set -eu

: "${INFLUX_TOKEN:?the admin token}"
: "${INFLUX_ORG:?the organisation}"
: "${INFLUX_BUCKET:?the bucket}"
: "${INFLUX_USER:?the admin user, owner of the tokens}"
tokens_dir="${TOKENS_DIR:-/tokens}"
service_uid="${SERVICE_UID:-10001}"   # user `facility` of the Dockerfile
grafana_uid="${GRAFANA_UID:-472}"     # user `grafana` of the grafana image

# The bucket's ID: `influx auth create` grants per bucket ID, not name.
bucket_id="$(influx bucket list --org "$INFLUX_ORG" --name "$INFLUX_BUCKET" --hide-headers | awk 'NR == 1 { print $1 }')"
if [ -z "$bucket_id" ]; then
  echo "influxdb-init: bucket '$INFLUX_BUCKET' not found in org '$INFLUX_ORG'" >&2
  exit 1
fi
known="$(influx auth list --org "$INFLUX_ORG" --json)"

# token <service> <uid> <influx auth create permission flags...>
token() {
  name="$1"
  owner="$2"
  shift 2
  dir="$tokens_dir/$name"
  file="$dir/influx_token"
  if [ -s "$file" ] && printf '%s\n' "$known" | grep -qF -- "\"$(cat "$file")\""; then
    echo "influxdb-init: $name keeps its token"
    return 0
  fi
  created="$(influx auth create --org "$INFLUX_ORG" --user "$INFLUX_USER" --description "facility-$name" "$@" --json)"
  value="$(printf '%s\n' "$created" | sed -n 's/.*"token":[[:space:]]*"\([^"]*\)".*$/\1/p' | head -n 1)"
  if [ -z "$value" ]; then
    echo "influxdb-init: influx auth create returned no token for $name" >&2
    exit 1
  fi
  mkdir -p "$dir"
  (umask 077 && printf '%s' "$value" > "$file.new")
  chown "$owner" "$file.new"
  mv "$file.new" "$file"
  echo "influxdb-init: created the $name token ($*)"
}

token ingest "$service_uid" --write-bucket "$bucket_id"
token alerts "$service_uid" --write-bucket "$bucket_id"
token simulator "$service_uid" --read-bucket "$bucket_id"
token grafana "$grafana_uid" --read-bucket "$bucket_id"
