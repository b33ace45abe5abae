#!/usr/bin/env bash
# Disables the system services Debian's packages enable on install (mosquitto on 1883,
# influxd on 8086, victoria-metrics on 8428): the tests start their own servers on free ports,
# and an enabled unit would come up at the next boot and collide with `docker compose up`.
# Only the packages named are touched (install-servers.sh passes the ones it just installed):
# a server someone else runs on this machine is never stopped or disabled.
#   disable-server-units.sh mosquitto influxdb victoria-metrics
set -euo pipefail
for package in "$@"; do
  case "$package" in
    mosquitto) unit=mosquitto ;;
    influxdb) unit=influxdb ;;
    victoria-metrics) unit=victoria-metrics ;;
    *) continue ;;  # (docker-compose has no service)
  esac
  # systemd (also offline, e.g. in a container without systemd running): remove the
  # multi-user.target.wants link the package's postinst made.
  if command -v deb-systemd-helper >/dev/null 2>&1; then
    deb-systemd-helper disable "$unit.service" >/dev/null 2>&1 || true
  fi
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --quiet "$unit.service" 2>/dev/null || true
  fi
  # SysV init links (update-rc.d defaults in the postinst).
  if command -v update-rc.d >/dev/null 2>&1 && [ -e "/etc/init.d/$unit" ]; then
    update-rc.d "$unit" disable >/dev/null 2>&1 || true
  fi
  echo "install-servers: $unit installed for the tests only: not started, not enabled at boot"
done
