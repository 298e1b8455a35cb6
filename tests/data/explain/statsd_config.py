# --explain golden: StatsD with Bucky 2 name rules and a processor.
name_prefix = "prod"
name_strip_duplicates = True
statsd_flush_time = 10.0
statsd_percentile_thresholds = [90]


def processor(host, name, value, timestamp):
    if "ignored" in name:
        return None
    if name.endswith(".latency.upper"):
        return host, name + "_ms", value, timestamp
    return host, name, value, timestamp
statsd_tags = "graphite"
