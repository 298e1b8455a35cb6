"""Bucky: a metrics relay from collectd, StatsD and MetricsD to Graphite."""

__version__ = "3.2.0.dev0"
