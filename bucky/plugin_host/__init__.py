"""Run collectd Python plugins (collectd-python(5)) inside Bucky, unmodified.

confparse: collectd.conf syntax -> ConfNode trees; collectd_module: the `collectd` module the
plugins import; host: loading, callbacks, scheduling and threads. The daemon input that drives
them is bucky.inputs.python_plugins. Nothing is imported here, so importing the package is free.
"""
