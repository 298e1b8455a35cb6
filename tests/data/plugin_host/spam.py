"""The read and write examples of collectd-python(5), as given there but for Python 3's print().

Loaded by the plugin host tests with `Import "spam"` from a <Plugin python> block.
"""
import random

import collectd


def read(data=None):
    vl = collectd.Values(type='gauge')
    vl.plugin='python.spam'
    vl.dispatch(values=[random.random() * 100])


def write(vl, data=None):
    for i in vl.values:
        print("%s (%s): %f" % (vl.plugin, vl.type, i))  # noqa: UP031


collectd.register_read(read);  # noqa: E703
collectd.register_write(write);  # noqa: E703
