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


# --- one preflight: --check and a real start agree ------------------------------------------------

# Run as user nobody (the non-root operator): the interpreter lives where nobody cannot read, so
# what the run needs is imported first, as in a daemon that drops privileges.
AS_NOBODY = """\
import os, pwd, sys
import bucky.cli, bucky.daemon.preflight, bucky.daemon.supervisor, bucky.inputs.statsd
nobody = pwd.getpwnam("nobody")
os.setgroups([]); os.setgid(nobody.pw_gid); os.setuid(nobody.pw_uid)
sys.exit(bucky.cli.main(sys.argv[1:]))
"""


@pytest.fixture
def shared_dir():
    """A folder every user may read (pytest's tmp_path is root's own); `locked` inside it is
    root's, readable and not writable by others."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="bucky-check-"))
    root.chmod(0o755)
    (root / "locked").mkdir(mode=0o755)
    (root / "a-file").write_text("not a folder\n")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run_bucky(args, user=None, timeout=30):
    """`bucky ARGS` as a real process (as `user` "nobody" if asked): (exit status, stderr)."""
    import os

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "bucky", *args]
    if user == "nobody":
        if os.geteuid() != 0:
            pytest.skip("running as user nobody needs root")
        command = [sys.executable, "-c", AS_NOBODY, *args]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd="/")
    return proc.returncode, proc.stderr


AGREE = {
    # name: (config lines, run as, the one line both print after "bucky: <config>: ")
    "directory in /proc": (
        "directory = '/proc/bucky'\n", None,
        "directory: expected a folder Bucky can create and write, got '/proc/bucky': "
        "No such file or directory"),
    "default folder a non-root user cannot create": (
        "directory = '{shared}/locked/bucky'\n", "nobody",
        "directory: expected a folder Bucky can create and write, got "
        "'{shared}/locked/bucky': Permission denied"),
    "directory that is a regular file": (
        "directory = '{shared}/a-file'\n", None,
        "directory: expected a folder Bucky can create and write, got '{shared}/a-file': "
        "a regular file"),
    "spool folder the configured uid cannot write": (
        "directory = '{shared}/state'\ngraphite_spool_dir = '{shared}/locked'\nuid = 'nobody'\n",
        None if __import__("os").geteuid() == 0 else "skip",
        "graphite_spool_dir: expected a writable directory (or graphite_spool_max_bytes = 0), "
        "got '{shared}/locked': Permission denied (as user nobody (uid {nobody}))"),
    "spool folder that is a regular file": (
        "directory = '{shared}/state'\ngraphite_spool_dir = '{shared}/a-file'\n", None,
        "graphite_spool_dir: expected an existing writable directory "
        "(or graphite_spool_max_bytes = 0), got '{shared}/a-file': a regular file, not a folder"),
    "spool folder that is missing": (
        "directory = '{shared}/state'\ngraphite_spool_dir = '{shared}/missing'\n", None,
        "graphite_spool_dir: expected an existing writable directory "
        "(or graphite_spool_max_bytes = 0), got '{shared}/missing': missing"),
    "listen address with a port": (
        "statsd_ip = '0.0.0.0:8125'\n", None,
        "statsd_ip: expected an IP address or host name, without ':port' (the port has its own "
        "option), got '0.0.0.0:8125'"),
    "near miss of an option": (
        "graphite_destinatons = ['10.0.0.1:2003']\n", None,
        "graphite_destinatons: unknown option (did you mean 'graphite_destinations'? a name of "
        "your own must start with '_')"),
    "uid without a user entry and no gid": (
        "directory = '{shared}/state'\nuid = {nouser}\n", None,
        "gid: expected a group for uid {nouser}, which has no user entry to take one from"),
    "auth file without users": (
        "collectd_enabled = True\ncollectd_port = {port}\ncollectd_security_level = 'Sign'\n"
        "collectd_auth_file = '{shared}/a-file'\n", None,
        "collectd_auth_file: '{shared}/a-file' has no 'user: password' line; nobody could send"),
}


@pytest.mark.parametrize("case", sorted(AGREE))
def test_check_and_start_agree_on_bad_configs(shared_dir, case):
    """The same exit status and the same one line from `bucky --check` and from a real start;
    nothing left behind by the check."""
    import pwd

    from buckyproc import free_port

    lines, user, expected = AGREE[case]
    if user == "skip":
        pytest.skip("a uid other than ours needs root")
    taken = {user.pw_uid for user in pwd.getpwall()}
    fill = {"shared": shared_dir, "port": free_port(), "nobody": pwd.getpwnam("nobody").pw_uid,
            "nouser": next(uid for uid in range(40000, 60000) if uid not in taken)}
    config = shared_dir / "config.py"
    config.write_text(f"statsd_port = {free_port()}\ncollectd_enabled = False\n"
                      "metricsd_enabled = False\nhttp_enabled = False\n"
                      + lines.format(**fill))
    config.chmod(0o644)
    before = sorted(p.name for p in shared_dir.rglob("*"))
    checked = run_bucky(["--check", str(config)], user)
    assert sorted(p.name for p in shared_dir.rglob("*")) == before  # the check made nothing
    started = run_bucky([str(config)], user)
    assert checked == started
    assert checked == (2, f"bucky: {config}: {expected.format(**fill)}\n")


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="switching user needs root")
def test_a_folder_start_up_hands_to_the_uid_passes_the_check(shared_dir, capsys):
    """`directory` exists and is root's: start-up gives it to `uid`, so the spool below it will
    be writable; the check must not refuse it (and does not hand it over itself)."""
    (shared_dir / "state").mkdir()
    code, config = check(shared_dir, f"directory = '{shared_dir}/state'\nuid = 'nobody'\n")
    assert code == 0, capsys.readouterr().err
    assert (shared_dir / "state").stat().st_uid == 0
    assert list((shared_dir / "state").iterdir()) == []


def test_verbose_shows_values_in_the_readme_notation_and_the_admin_port(tmp_path, capsys):
    """Destinations as host:port:instance, lists as lists (the README's notation), and the
    StatsD admin listener among the sockets."""
    code, config = check(tmp_path, """\
        graphite_destinations = ["10.0.0.1:2004:a", "[::1]:2104:b", "carbon:2003"]
        statsd_percentile_thresholds = (90, 99.9)
        statsd_forward = ["10.0.0.2:8125:8126", "10.0.0.3:8125"]
        statsd_histogram = [{"metric": "api", "bins": [10, "inf"]}]
        metricsd_handlers = [("^a", 5)]
        statsd_admin_port = 18130
        """, "-v")
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert ("graphite_destinations = ['10.0.0.1:2004:a', '[::1]:2104:b', 'carbon:2003']"
            "  # changed, default []") in out
    assert "statsd_percentile_thresholds = [90, 99.9]  # changed, default [90]" in out
    assert ("statsd_forward = ['10.0.0.2:8125:8126', '10.0.0.3:8125']  # changed, default []"
            in out)
    assert ("statsd_histogram = [{'metric': 'api', 'bins': [10.0, 'inf']}]  # changed, default []"
            in out)
    assert "metricsd_handlers = [('^a', 5.0, 0)]  # changed, default []" in out
    assert "influxdb_hosts = ['127.0.0.1:8089']" in out
    assert "statsd_metadata = {}" in out
    assert "# socket statsd_admin: TCP 127.0.0.1:18130" in out


def test_verbose_without_check_is_refused(tmp_path, capsys):
    """Like --pkts without --explain: a flag that would be silently ignored."""
    for flag in ("--verbose", "-v"):
        assert cli.main([flag, "--disable-statsd"]) == 2
        assert capsys.readouterr().err == "bucky: --verbose goes with --check\n"
