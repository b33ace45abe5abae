# One image for facility-ingest, facility-alerts, facility-simulator, facility-grafana and facility-bridge.
# Build stage installs the pinned dependencies (constraints.txt) into a virtualenv; the final
# stage copies only that virtualenv and the configuration: no compiler, no pip cache.
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/facility
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY common ./common
COPY services ./services
COPY devices ./devices
COPY grafana ./grafana
COPY supervisor ./supervisor
# Runtime dependencies only (not the dev extra), at the versions pinned in constraints.txt.
# The build backend is pinned in pyproject.toml ([build-system] requires): `-c` does not reach
# the isolated environment pip builds the wheel in.
RUN /opt/facility/bin/pip install -c constraints.txt .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="facility-monitor" \
      org.opencontainers.image.description="Gwangmyeong facility monitoring: ingest, alerts, simulator, dashboards"
ENV PATH=/opt/facility/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOG_FORMAT=json
RUN groupadd --system --gid 10001 facility \
 && useradd --system --uid 10001 --gid facility --home-dir /app --shell /usr/sbin/nologin facility \
 && mkdir -p /app /var/lib/facility \
 && chown facility:facility /var/lib/facility
COPY --from=build /opt/facility /opt/facility
# The old place of the dashboards (GRAFANA_DASHBOARDS_DIR=/app/grafana/dashboards) keeps
# working: it points into the package, their one copy.
RUN mkdir -p /app/grafana \
 && ln -s "$(python -c 'import grafana, pathlib; print(pathlib.Path(grafana.__file__).parent / "dashboards")')" /app/grafana/dashboards
# Smoke test of the installed package, not of a source tree: from / (nothing importable in
# the working directory), as the runtime user, every console script must start, and the
# dashboards `facility-grafana push/verify` use must be in the package.
USER facility:facility
WORKDIR /
RUN for program in facility-ingest facility-alerts facility-simulator facility-grafana facility-run facility-acl facility-bridge facility-report; do \
      "$program" --help > /dev/null || { echo "smoke test: $program --help failed" >&2; exit 1; }; \
    done \
 && python -c "from grafana.settings import GrafanaSettings as S; d = S.model_fields['grafana_dashboards_dir'].default; n = len(list(d.glob('*.json'))); assert n >= 5, f'{n} dashboards in {d}'" \
 && test -s /app/grafana/dashboards/nzc-energy.json
WORKDIR /app
COPY config ./config
# Spool (ingest) and state live on a volume mounted here.
VOLUME ["/var/lib/facility"]
CMD ["facility-ingest", "--help"]
