"""Sun, sky and air at Gwangmyeong: solar position, clear-sky irradiance, seeded cloud cover and
a seasonal/diurnal air temperature (no wall clock, only the simulated time passed in)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

GWANGMYEONG_LAT = 37.48
GWANGMYEONG_LON = 126.86
HOUR_MS = 3_600_000
# Mean cloud cover by month (0..1): dry, clear winters; the changma monsoon in July.
_MONTHLY_CLOUD = (0.35, 0.35, 0.45, 0.45, 0.5, 0.6, 0.75, 0.6, 0.45, 0.35, 0.4, 0.35)
# Seoul mean daily air temperature by month, degrees C.
_MONTHLY_TEMP = (-2.0, 0.5, 5.5, 12.5, 18.0, 22.5, 25.5, 26.0, 21.5, 14.5, 7.0, 0.5)


def solar_elevation_sin(lat: float, lon: float, ts_ms: int) -> float:
    """Sine of the sun's elevation (NOAA low-precision formulas; good to ~0.5 degree)."""
    at = datetime.fromtimestamp(ts_ms / 1000, UTC)
    day = at.timetuple().tm_yday
    hours = at.hour + at.minute / 60 + at.second / 3600
    gamma = 2 * math.pi / 365 * (day - 1 + (hours - 12) / 24)
    decl = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
    )
    eqtime_min = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    solar_min = hours * 60 + eqtime_min + 4 * lon
    hour_angle = math.radians(solar_min / 4 - 180)
    phi = math.radians(lat)
    return math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour_angle)


def clear_sky_kw_m2(sin_elevation: float) -> float:
    """Global irradiance on the panels under a clear sky (Meinel air-mass model), kW/m2."""
    if sin_elevation <= 0.01:
        return 0.0
    air_mass = min(38.0, 1 / sin_elevation)
    direct: float = 1.353 * 0.7 ** (air_mass**0.678)
    return direct * sin_elevation * 1.1  # +10 % diffuse light


def air_temperature_c(ts_ms: int, utc_offset_h: float = 9.0) -> float:
    """Seasonal mean plus a diurnal swing peaking mid-afternoon (local time)."""
    at = datetime.fromtimestamp(ts_ms / 1000, UTC)
    month_pos = at.month - 1 + (at.day - 1) / 31
    lo = _MONTHLY_TEMP[int(month_pos) % 12]
    hi = _MONTHLY_TEMP[(int(month_pos) + 1) % 12]
    frac = month_pos - int(month_pos)
    # Monthly means describe mid-month; shift by half a month before interpolating.
    frac = (frac + 0.5) % 1.0
    seasonal = lo + (hi - lo) * frac
    local_h = (at.hour + at.minute / 60 + utc_offset_h) % 24
    diurnal = 4.5 * math.cos(2 * math.pi * (local_h - 15) / 24)
    return seasonal + diurnal


class CloudCover:
    """Hourly cloud fraction as a seeded AR(1) process around the month's mean, interpolated."""

    def __init__(self, rng: random.Random, start_ms: int) -> None:
        self._rng = rng
        self._first_hour = start_ms // HOUR_MS
        self._knots: list[float] = []

    def _knot(self, hour: int) -> float:
        index = hour - self._first_hour
        index = max(index, 0)
        while len(self._knots) <= index:
            h = self._first_hour + len(self._knots)
            month = datetime.fromtimestamp(h * 3600, UTC).month
            mean = _MONTHLY_CLOUD[month - 1]
            prev = self._knots[-1] if self._knots else mean
            value = 0.8 * prev + 0.2 * mean + self._rng.gauss(0, 0.12)
            self._knots.append(min(1.0, max(0.0, value)))
        return self._knots[index]

    def at(self, ts_ms: int) -> float:
        hour, rest = divmod(ts_ms, HOUR_MS)
        a, b = self._knot(hour), self._knot(hour + 1)
        return a + (b - a) * rest / HOUR_MS

    @staticmethod
    def pv_factor(cloud: float) -> float:
        """Kasten-Czeplak: share of clear-sky irradiance that gets through the clouds."""
        factor: float = 1 - 0.75 * cloud**3.4
        return factor
