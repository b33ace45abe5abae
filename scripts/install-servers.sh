#!/usr/bin/env bash
# Installs the real servers the tests talk to (Debian packages) when they are missing.
# Runs apt-get only as root; otherwise says what to install and lets the tests decide
# (CI=true turns a missing server into a failure, a laptop run skips with this hint).
set -euo pipefail
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
# Debian's docker-compose 1.x carries the compose-spec JSON schema the compose test validates with.
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# pdftotext/pdftoppm: the report tests read and render the PDF pages as a person would see them.
command -v pdftoppm >/dev/null 2>&1 || missing+=(poppler-utils)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d 101: install the binaries without starting system-wide daemons on default ports.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ "$own_policy" -eq 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  # Not started (policy-rc.d), and not enabled either: nothing listens on 1883/8086 at boot.
  "$(dirname "$0")/disable-server-units.sh" "${missing[@]}"
else
  echo "missing servers: ${missing[*]} (install with: sudo apt-get install ${missing[*]})" >&2
fi
