"""Which InfluxDB answers the alerts' notifier gives up on (dead letter) and which it retries."""

from __future__ import annotations

import pytest

from services.alerts.notifiers.influx import refused_for_good


@pytest.mark.parametrize("status", [400, 405, 413, 422])
def test_a_refusal_of_the_points_themselves_is_final(status: int) -> None:
    assert refused_for_good(status)


@pytest.mark.parametrize("status", [401, 403, 404, 408, 429, 500, 502, 503, 504])
def test_throttling_server_errors_and_the_databases_own_set_up_are_retried(status: int) -> None:
    assert not refused_for_good(status)
