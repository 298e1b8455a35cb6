"""Bucky configuration: every option with its default and what it does.

This file is Python. Copy it, keep the lines you change, and run `bucky /path/to/config.py`.
Command-line options override values set here. Unknown names draw a warning.
"""


# --- general -----------------------------------------------------------------------------------

# write 'name value timestamp' lines to stdout instead of Graphite
debug = False
# DEBUG, INFO, WARNING, ERROR or CRITICAL
log_level = 'INFO'
# log lines carry their own time; 'auto' = not when JOURNAL_STREAM is set (journald)
log_timestamps = 'auto'
# adjust the process priority by this
nice = None
# user (name or number) to run as after binding sockets
uid = None
# group (name or number) to run as after binding sockets
gid = None
# state directory (saved gauges); created
directory = '/var/lib/bucky'
# seconds each stage gets to stop
process_join_timeout = 2.0
# samples a queue between processes may hold; 0 = the default bound (1,000,000)
max_sample_queue = 0
# show tracebacks of config file errors
full_trace = False
# classes with send(host, name, value, timestamp)
custom_clients = []
# function(host, name, value, timestamp) -> tuple or None, run in its own process
processor = None
# drop a sample when the processor raises
processor_drop_on_error = False
# seconds between Bucky's own metrics (<self_metrics_prefix>.<process>.<counter>); 0 = off
self_metrics_interval = 10.0
# prefix of Bucky's own metrics; {host} = the short host name
self_metrics_prefix = "bucky.{host}"

# --- HTTP status server (a page, /health, /metrics) ---------------------------------------------
# run the HTTP status server (/, /health, /metrics, /api/)
http_enabled = True
# HTTP status server listen address
http_ip = "127.0.0.1"
# HTTP status server TCP port
http_port = 8127
# how long the status page keeps the series it saw
http_history_seconds = 600.0
# what /health answers while degraded (a destination unreachable, the spool in use): 200 or 503
http_degraded_status = 200

# --- sentry ------------------------------------------------------------------------------------

# report errors to Sentry (needs sentry-sdk)
sentry_enabled = False
# Sentry DSN
sentry_dsn = None
# lowest log level sent to Sentry
sentry_log_level = 'WARNING'
# attach stacks to Sentry log events
sentry_auto_log_stacks = False

# --- names -------------------------------------------------------------------------------------

# first path component of every metric
name_prefix = None
# path components after name_prefix
name_prefix_parts = None
# last path component of every metric
name_postfix = None
# path components before name_postfix
name_postfix_parts = None
# replaces '.' inside a path component
name_replace_char = '_'
# collapse repeated components (cpu.cpu.0 -> cpu.0)
name_strip_duplicates = True
# host name suffixes to remove (e.g. 'example.com')
name_host_trim = []

# --- carbon input (see "Carbon input" in README.rst) ------------------------------------------

# run the carbon input (Graphite lines and pickle)
carbon_enabled = False
# carbon input listen address
carbon_ip = '127.0.0.1'
# carbon input plaintext port, TCP and UDP
carbon_line_port = 2013
# carbon input pickle port, TCP
carbon_pickle_port = 2014
# close a carbon TCP client that completes no line or frame for this long (s); None: never
carbon_idle_timeout = 120.0

# --- MetricsD input ----------------------------------------------------------------------------

# MetricsD UDP listen address
metricsd_ip = '127.0.0.1'
# MetricsD UDP port
metricsd_port = 23632
# run the MetricsD input
metricsd_enabled = True
# MetricsD flush interval (s)
metricsd_default_interval = 10.0
# (regex, interval[, priority]) per metric name
metricsd_handlers = []
# cap on live MetricsD metrics; new ones beyond it are dropped and counted
metricsd_max_metrics = 10000
# forget a MetricsD metric after this many idle flush intervals
metricsd_expire_intervals = 360

# --- collectd input ----------------------------------------------------------------------------

# collectd UDP listen address (multicast joins)
collectd_ip = '127.0.0.1'
# collectd UDP port
collectd_port = 25826
# run the collectd input
collectd_enabled = True
# types.db files (default: the system's)
collectd_types = []
# plugin name -> converter function
collectd_converters = {}
# load converters from entry points
collectd_use_entry_points = True
# accept COUNTER for DERIVE and back
collectd_counter_eq_derive = False
# collectd receiver processes (SO_REUSEPORT)
collectd_workers = 1
# 0/None, 1/Sign, 2/Encrypt
collectd_security_level = 0
# 'user: password' lines
collectd_auth_file = None
# forget a series' rate state after this many missed intervals
collectd_series_ttl_intervals = 4
# collectd.conf-style file with a <Plugin python> block: run collectd Python plugins
collectd_python_config = None

# --- StatsD input ------------------------------------------------------------------------------

# StatsD UDP (and TCP) listen address
statsd_ip = '127.0.0.1'
# StatsD UDP port
statsd_port = 8125
# run the StatsD input
statsd_enabled = True
# StatsD flush interval (s)
statsd_flush_time = 10.0
# tags added to every StatsD metric
statsd_metadata = {}
# stats.<k> / stats_counts.<k> names
statsd_legacy_namespace = True
# prefix of StatsD metrics
statsd_global_prefix = 'stats'
# counter prefix (new namespace)
statsd_prefix_counter = 'counters'
# timer prefix
statsd_prefix_timer = 'timers'
# set prefix
statsd_prefix_set = 'sets'
# gauge prefix
statsd_prefix_gauge = 'gauges'
# prefix of StatsD's own statistics
statsd_prefix_stats = 'statsd'
# save gauges across restarts
statsd_persistent_gauges = False
# file in `directory` for gauges
statsd_gauges_savefile = 'gauges.save'
# seconds between gauge saves
statsd_gauges_save_interval = 60.0
# do not send stats that saw no update
statsd_delete_idlestats = False
# with delete_idlestats: idle counters
statsd_delete_counters = True
# with delete_idlestats: idle timers
statsd_delete_timers = True
# with delete_idlestats: idle sets
statsd_delete_sets = True
# with delete_idlestats: only updated gauges
statsd_onlychanged_gauges = True
# forget gauges idle this long (s); 0 = never
statsd_gauges_max_ttl = 0.0
# cap on live StatsD keys; 0 = no cap
statsd_max_keys = 500000
# timer percentiles (negative = top)
statsd_percentile_thresholds = [90]
# emit timer mean
statsd_timer_mean = True
# emit timer upper
statsd_timer_upper = True
# emit timer lower
statsd_timer_lower = True
# emit timer count
statsd_timer_count = True
# emit timer count_ps
statsd_timer_count_ps = True
# emit timer sum
statsd_timer_sum = True
# emit timer sum_squares
statsd_timer_sum_squares = True
# emit timer median
statsd_timer_median = True
# emit timer std
statsd_timer_std = True
# histogram bins, as the reference's `histogram`
statsd_histogram = []
# drop: tags left out, a name's tag sets summed (Bucky 2); graphite: name;k=v series
statsd_tags = 'drop'
# StatsD TCP port (off when None)
statsd_tcp_port = None
# concurrent TCP clients
statsd_tcp_max_connections = 250
# longest TCP line
statsd_max_line_length = 65536
# StatsD aggregator processes; each owns a share of the keys (README: StatsD at scale)
statsd_workers = 1
# proxy mode: forward lines to these "host:port[:adminport]" nodes (proxy.js's ring), not aggregate
statsd_forward = []
# largest forwarded datagram
statsd_forward_packet_size = 1432
# seconds between health checks of forward nodes with an adminport
statsd_forward_check_interval = 10.0
# the reference StatsD's management TCP port (health, stats, counters...); off when None
statsd_admin_port = None
# management interface listen address
statsd_admin_ip = '127.0.0.1'

# --- Graphite output ---------------------------------------------------------------------------

# send to Graphite
graphite_enabled = True
# carbon host (name, IPv4 or IPv6)
graphite_ip = '127.0.0.1'
# carbon port (2004 for pickle)
graphite_port = 2003
# connection attempts per outage before buffered points are dropped; negative = forever
graphite_max_reconnects = 60
# first reconnect delay (s)
graphite_reconnect_delay = 1.0
# delay multiplier per failed attempt
graphite_backoff_factor = 1.5
# longest reconnect delay (s)
graphite_backoff_max = 60.0
# use the pickle protocol
graphite_pickle_enabled = False
# points per pickle message
graphite_pickle_buffer_size = 500
# datapoints kept while carbon is unreachable; oldest dropped beyond
graphite_buffer_size = 1000000
# disk spool root, one subdirectory per destination (None: <directory>/spool)
graphite_spool_dir = None
# disk spool bound per destination in bytes; 0 = no spool (memory only)
graphite_spool_max_bytes = 1073741824
# seconds between fsyncs of the spool (the most a crash can lose)
graphite_spool_sync_interval = 1.0

# --- Graphite clusters (README "Graphite clusters") ---------------------------------------------

# carbons as 'host:port[:instance]' ([::1]:2004:a); empty = graphite_ip:graphite_port, e.g.
# ['127.0.0.1:2004:a', '127.0.0.1:2104:b', '127.0.0.1:2204:c'] (carbon's DESTINATIONS)
graphite_destinations = []
# which destination(s) get a metric: consistent-hashing, fast-hashing, jump-hashing, broadcast
graphite_relay_method = 'consistent-hashing'
# carbon_ch, fnv1a_ch or mmh3_ch (jump_fnv1a_ch for jump-hashing); None = the method's default
graphite_hash_type = None
# destinations per metric (carbon's REPLICATION_FACTOR)
graphite_replication_factor = 1
# replicas on different hosts only (carbon's DIVERSE_REPLICAS; carbon-relay's default is True)
graphite_diverse_replicas = False

# --- InfluxDB output (UDP line protocol) -------------------------------------------------------

# send InfluxDB line protocol over UDP
influxdb_enabled = False
# host:port destinations
influxdb_hosts = ['127.0.0.1:8089']
