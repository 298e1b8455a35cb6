"""Packaging for Bucky: `pip install .` gives the `bucky`, `bucky-dump` and `bucky-send` commands
and the bucky(1) man page."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "bucky" / "__init__.py").read_text())[1]

setup(
    name="bucky",
    version=VERSION,
    description="A metrics relay: collectd, StatsD and MetricsD in, Graphite out",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["bucky", "bucky.*"]),
    include_package_data=True,  # static files of the status page (MANIFEST.in)
    install_requires=["pycryptodome>=3.10", "setproctitle>=1.2"],
    extras_require={
        # collectd-connect-time: an unmodified third-party collectd Python plugin the tests run
        "test": ["pytest>=7", "hypothesis>=6", "statsd>=4", "datadog>=0.49", "ruff",
                 "collectd-connect-time==0.3.0", "prometheus_client>=0.17", "selenium>=4.10",
                 "mmh3>=4", "docutils"],
        # carbon's fast-hashing router (graphite_relay_method = "fast-hashing") needs mmh3
        "fast-hashing": ["mmh3>=4"],
    },
    entry_points={
        "console_scripts": [
            "bucky = bucky.cli:main",
            "bucky-dump = bucky.dump:main",
            "bucky-send = bucky.send:main",
        ],
    },
    classifiers=[
        "Development Status :: 5 - Production/Stable",
        "Environment :: No Input/Output (Daemon)",
        "Intended Audience :: System Administrators",
        "License :: OSI Approved :: Apache Software License",
        "Operating System :: POSIX :: Linux",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: System :: Monitoring",
        "Topic :: System :: Networking :: Monitoring",
    ],
)
