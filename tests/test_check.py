"""`bucky --check`: every check start-up makes, including those that used to run only inside a
child, on a matrix of good and bad configs; exit status and the one line."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bucky import cli
from bucky.daemon.preflight import preflight
from bucky.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
BASE = "statsd_port = 18125\ncollectd_port = 18126\nmetricsd_port = 18127\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def check(tmp_path, text, *extra):
    config = write(tmp_path, "config.py", BASE + textwrap.dedent(text))
    return cli.main(["--check", *extra, str(config)]), config


PLUGIN_DIR_FILES = {"okplugin.py": "import collectd\n"}


@pytest.fixture
def plugin_dir(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    for name, text in PLUGIN_DIR_FILES.items():
        (d / name).write_text(text)
    return d


def plugin_conf(tmp_path, plugin_dir, body):
    return write(tmp_path, "python.conf", f"""\
        <Plugin python>
          ModulePath "{plugin_dir}"
          {body}
        </Plugin>
        """)


# --- good ---------------------------------------------------------------------------------------


def test_defaults_are_ok(tmp_path, capsys):
    code, config = check(tmp_path, "")
    out = capsys.readouterr().out
    assert code == 0
    assert out == f"{config}: OK\n"


def test_a_config_using_every_kind_of_child_is_ok(tmp_path, capsys, plugin_dir):
    types = write(tmp_path, "types.db", "mytype value:GAUGE:0:U\n")
    auth = write(tmp_path, "auth", "alice: secret\n")
    conf = plugin_conf(tmp_path, plugin_dir, 'Import "okplugin"')
    code, _ = check(tmp_path, f"""\
        collectd_types = [{str(types)!r}]
        collectd_security_level = "Sign"
        collectd_auth_file = {str(auth)!r}
        collectd_python_config = {str(conf)!r}
        processor = "os.path:join"
        custom_clients = ["bucky.client:Client"]
        influxdb_enabled = True
        influxdb_hosts = ["127.0.0.1:8089", "[::1]:8089"]
        """)
    assert code == 0, capsys.readouterr()


def test_verbose_prints_every_option_and_marks_changes(tmp_path, capsys):
    code, config = check(tmp_path, "statsd_flush_time = 5\n", "--verbose")
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[-1] == f"{config}: OK"
    from bucky.config import OPTIONS

    settings = [line for line in out if not line.startswith("#")][:-1]
    assert [line.split(" = ")[0] for line in settings] == [o.name for o in OPTIONS]
    assert "statsd_flush_time = 5.0  # changed, default 10.0" in settings
    assert "statsd_port = 18125  # changed, default 8125" in settings
    assert "statsd_tcp_port = None" in settings  # unchanged: no mark
    assert "# socket statsd: UDP 127.0.0.1:18125" in out
    assert "# process graphite: output" in out
    assert "# channel statsd -> graphite" in out


# --- bad: one line, exit 2 ----------------------------------------------------------------------


def test_syntax_error(tmp_path, capsys):
    code, config = check(tmp_path, "statsd_port = \n")
    assert code == 2
    assert capsys.readouterr().err.strip().startswith(f"bucky: {config}:4:")


def test_bad_value(tmp_path, capsys):
    code, config = check(tmp_path, "collectd_workers = 0\n")
    assert code == 2
    assert capsys.readouterr().err == (
        f"bucky: {config}: collectd_workers: expected an integer 1-64, got 0\n")


def test_processor_that_does_not_import(tmp_path, capsys):
    code, config = check(tmp_path, "processor = 'no_such_module_xyz:fn'\n")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"bucky: {config}: processor: expected an importable")


def test_bad_graphite_destination(tmp_path, capsys):
    code, config = check(tmp_path, "graphite_destinations = ['127.0.0.1:notaport']\n")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"bucky: {config}: graphite_destinations: "), err
    assert err.count("\n") == 1


def test_custom_client_that_does_not_import(tmp_path, capsys):
    code, config = check(tmp_path, "custom_clients = ['no_such_module_xyz:Client']\n")
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"bucky: {config}: custom_clients: expected")


CHILD_CHECKS = {
    # name: (files to write, config lines, option named, words in the message)
    "auth file without users": (
        {"auth": "# nobody\n"},
        "collectd_security_level = 'Sign'\ncollectd_auth_file = {auth!r}\n",
        "collectd_auth_file", "no 'user: password' line"),
    "types.db that does not parse": (
        {"types.db": "mytype value:NOTATYPE:0:U\n"},
        "collectd_types = [{types.db!r}]\n",
        "collectd_types", "types.db:1"),
    "plugin config without a python block": (
        {"python.conf": "Hostname \"x\"\n"},
        "collectd_python_config = {python.conf!r}\n",
        "collectd_python_config", "no <Plugin python> block"),
    "plugin config with an unknown option": (
        {"python.conf": "<Plugin python>\n  Bogus \"x\"\n</Plugin>\n"},
        "collectd_python_config = {python.conf!r}\n",
        "collectd_python_config", "unknown option 'Bogus'"),
    "plugin module that does not exist": (
        {"python.conf": "<Plugin python>\n  Import \"no_such_plugin_xyz\"\n</Plugin>\n"},
        "collectd_python_config = {python.conf!r}\n",
        "collectd_python_config", "cannot import plugin module 'no_such_plugin_xyz'"),
    "plugin TypesDB that does not parse": (
        {"python.conf": "TypesDB \"bad.db\"\n<Plugin python>\n</Plugin>\n",
         "bad.db": "broken\n"},
        "collectd_python_config = {python.conf!r}\n",
        "collectd_python_config", "has no data sources"),
    "influxdb host without a port": (
        {}, "influxdb_enabled = True\ninfluxdb_hosts = ['127.0.0.1:notaport']\n",
        "influxdb_hosts", "expected host:port"),
}


@pytest.mark.parametrize("case", sorted(CHILD_CHECKS))
def test_child_only_checks_fail_the_check(tmp_path, capsys, case):
    files, lines, option, words = CHILD_CHECKS[case]
    paths = {}
    for name, text in files.items():
        paths[name] = str(write(tmp_path, name, text))
    for name, path in paths.items():
        lines = lines.replace("{" + name + "!r}", repr(path))
    code, config = check(tmp_path, lines)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith(f"bucky: {config}: {option}: "), err
    assert words in err


def test_broken_converter_entry_point(tmp_path, capsys, monkeypatch):
    site = tmp_path / "site"
    dist = site / "brokenconv-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenconv\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[bucky.collectd.converters]\ncpu = no_such_converter_module_xyz:convert\n")
    monkeypatch.syspath_prepend(str(site))
    code, config = check(tmp_path, "")
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"bucky: {config}: collectd_use_entry_points: "), err
    assert "'cpu'" in err and err.count("\n") == 1
    # Without entry points the same config is fine.
    code, _ = check(tmp_path, "collectd_use_entry_points = False\n")
    assert code == 0


def test_plugin_modules_are_found_not_imported(tmp_path, plugin_dir):
    """The check must not run plugin code: a plugin that would sleep (or start threads) at
    import is only located."""
    (plugin_dir / "sleepy.py").write_text("import time\ntime.sleep(60)\n")
    conf = plugin_conf(tmp_path, plugin_dir, 'Import "sleepy"')
    from bucky.config import make_config

    cfg = make_config(collectd_python_config=str(conf))
    preflight(cfg)  # returns at once
    assert "sleepy" not in sys.modules


def test_plan_names_the_source(tmp_path):
    from bucky.config import make_config

    cfg = make_config(influxdb_enabled=True, influxdb_hosts=["x:y"])
    with pytest.raises(ConfigError, match=r"^<overrides>: influxdb_hosts: expected host:port"):
        preflight(cfg)


def test_start_up_with_a_child_only_error_exits_2_before_binding(tmp_path):
    """The same checks run before any child starts: exit 2 (config), not 1 (runtime)."""
    auth = write(tmp_path, "auth", "# nobody\n")
    config = write(tmp_path, "config.py", BASE + "collectd_security_level = 'Encrypt'\n"
                   f"collectd_auth_file = {str(auth)!r}\ndirectory = {str(tmp_path)!r}\n")
    proc = subprocess.run([sys.executable, "-m", "bucky", str(config)], capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"bucky: {config}: collectd_auth_file: "), proc.stderr
    assert proc.stderr.count("\n") == 1


def test_check_binds_nothing(tmp_path, capsys):
    """--check succeeds while the configured ports are taken (it binds nothing)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code, _ = check(tmp_path, f"statsd_port = {port}\n")
    assert code == 0
