"""facility-report: the week's (or any period's) figures from InfluxDB as HTML and PDF."""
