import dataclasses
import pickle
import re
import typing
from typing import Any

import pytest

from bucky import config
from bucky.errors import ConfigError


def write(tmp_path, text, name="config.py"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_defaults_are_bucky2_defaults():
    cfg = config.make_config()
    assert (cfg.statsd_port, cfg.collectd_port, cfg.metricsd_port, cfg.graphite_port) == (
        8125, 25826, 23632, 2003)
    assert cfg.statsd_flush_time == 10.0 and cfg.graphite_pickle_buffer_size == 500
    assert cfg.name_replace_char == "_" and cfg.name_strip_duplicates is True


def test_config_is_frozen_and_picklable():
    cfg = config.make_config(statsd_metadata={"env": "prod"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.statsd_port = 1
    with pytest.raises(TypeError):
        cfg.statsd_metadata["x"] = "y"
    assert pickle.loads(pickle.dumps(cfg)) == cfg


@pytest.mark.parametrize("option,value,expected", [
    ("statsd_port", "abc", "statsd_port: expected a port number 1-65535, got 'abc'"),
    ("statsd_port", 70000, "statsd_port: expected a port number 1-65535, got 70000"),
    ("collectd_port", 0, "collectd_port: expected a port number 1-65535, got 0"),
    ("statsd_flush_time", -1, "statsd_flush_time: expected a number > 0, got -1"),
    ("log_level", "LOUD", "log_level: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("collectd_security_level", "paranoid", "collectd_security_level: expected 0, 1, 2"),
    ("statsd_percentile_thresholds", [0], "expected a list of percentiles"),
    ("metricsd_handlers", [("(", 10)], "metricsd_handlers: expected a list of (regex"),
    ("graphite_ip", "", "graphite_ip: expected an IP address or host name"),
    ("processor", "no.such.module:fn", "processor: expected an importable"),
    ("custom_clients", [42], "custom_clients: expected a list of classes"),
    ("uid", "no-such-user-xyz", "uid: expected an existing user name or a uid"),
    ("statsd_tags", "json", "statsd_tags: expected one of 'graphite', 'drop'"),
    ("collectd_types", ["/nonexistent/types.db"], "collectd_types: expected a readable file"),
    ("debug", "maybe", "debug: expected True or False"),
])
def test_bad_values_name_file_option_and_value(tmp_path, option, value, expected):
    path = write(tmp_path, f"{option} = {value!r}\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert message.startswith(path + ": ")
    assert expected in message
    assert "\n" not in message


def test_values_are_normalised(tmp_path):
    path = write(tmp_path, "statsd_port = '8126'\ncollectd_security_level = 'Encrypt'\n"
                 "collectd_auth_file = __file__\nmetricsd_handlers = [('^a', 5)]\n"
                 "name_host_trim = ['example.com']\nstatsd_percentile_thresholds = 99.9\n")
    cfg, warnings = config.load(path)
    assert cfg.statsd_port == 8126 and cfg.collectd_security_level == 2
    assert cfg.metricsd_handlers[0][0] == re.compile("^a")
    assert cfg.metricsd_handlers[0][1:] == (5.0, 0)
    assert cfg.name_host_trim == ("example.com",)
    assert cfg.statsd_percentile_thresholds == (99.9,)
    assert warnings == []


def test_security_level_without_auth_file_is_an_error(tmp_path):
    path = write(tmp_path, "collectd_security_level = 'Sign'\n")
    with pytest.raises(ConfigError, match="collectd_security_level: Sign/Encrypt needs"):
        config.load(path)


def test_syntax_error_gives_file_and_line(tmp_path):
    path = write(tmp_path, "statsd_port = 8125\n\nthis is not python\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}:3: ")


def test_runtime_error_gives_file_and_line(tmp_path):
    path = write(tmp_path, "import os\nx = 1\nimport no_such_module_here\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value).startswith(f"{path}:3: ModuleNotFoundError")
    assert "Traceback" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        config.load(path, full_trace=True)
    assert "Traceback" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file: No such file"):
        config.load(str(tmp_path / "nope.py"))


def test_unknown_names_warn_with_suggestion(tmp_path):
    """A name of the file's own (it is Python) is ignored with a warning, as in Bucky 2."""
    path = write(tmp_path, "statsd_portnumber = 1\nimport os\ndef helper(): pass\n"
                 "_private = 2\nservers = ['a']\n")
    _, warnings = config.load(path)
    hint = "(did you mean 'statsd_port'?)"
    assert warnings == [f"{path}: unknown option 'statsd_portnumber' ignored {hint}",
                        f"{path}: unknown option 'servers' ignored"]


@pytest.mark.parametrize("typo,meant", [
    ("graphite_destinatons", "graphite_destinations"),  # a letter missing
    ("statsd_prot", "statsd_port"),  # two swapped
    ("statsd_host", "statsd_port"),  # two changed (there is no such option: statsd_ip is)
    ("graphite_enable", "graphite_enabled"),
    ("nicee", "nice"),  # one edit from a short name
])
def test_a_near_miss_of_an_option_is_an_error(tmp_path, typo, meant):
    """Traffic would silently go to the option's default (e.g. the default carbon)."""
    path = write(tmp_path, f"{typo} = 1\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value) == (f"{path}: {typo}: unknown option (did you mean {meant!r}? "
                              "a name of your own must start with '_')")
    _, warnings = config.load(write(tmp_path, f"_{typo} = 1\n"))  # the way out: a private name
    assert warnings == []


@pytest.mark.parametrize("name", ["uuid", "pid", "hostname", "STATSD_PORT", "graphite_hosts_all",
                                  "debug_level_x"])
def test_names_further_from_every_option_are_not_near_misses(name):
    assert config.near_miss(name) is None


@pytest.mark.parametrize("value", ["0.0.0.0:8125", "127.0.0.1:8125", "localhost:8125",
                                   "[::1]:8125"])
def test_a_listen_address_with_a_port_names_the_option(tmp_path, value):
    path = write(tmp_path, f"statsd_ip = {value!r}\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value) == (f"{path}: statsd_ip: expected an IP address or host name, without "
                              f"':port' (the port has its own option), got {value!r}")


@pytest.mark.parametrize("value,normalised", [
    ("0.0.0.0", "0.0.0.0"), ("::", "::"), ("[::1]", "::1"), ("fe80::1%eth0", "fe80::1%eth0"),
    ("carbon-1.example.com", "carbon-1.example.com"), ("localhost", "localhost"),
    (" 10.0.0.1 ", "10.0.0.1"), ("graphite_relay.internal.", "graphite_relay.internal."),
])
def test_addresses_and_host_names_pass(value, normalised):
    assert config.address(value) == normalised


def test_config_class_declares_every_option_with_its_checkers_type():
    """Config is a class a reader and a type checker can see: `cfg.statsd_port` is an int."""
    hints = typing.get_type_hints(config.Config)
    assert list(hints) == [o.name for o in config.OPTIONS] + ["source", "given"]
    assert hints["graphite_destinations"] == tuple[config.placement.Destination, ...]
    assert config.Config().statsd_port == 8125 and config.Config().source == "<defaults>"


def test_command_line_overrides_file(tmp_path):
    path = write(tmp_path, "statsd_port = 9000\ngraphite_port = 2004\n")
    cfg, _ = config.load(path, {"statsd_port": "9001"})
    assert cfg.statsd_port == 9001 and cfg.graphite_port == 2004


def test_bad_command_line_value_is_attributed_to_the_command_line():
    with pytest.raises(ConfigError, match="^command line: statsd_port: expected a port"):
        config.load(None, {"statsd_port": "x"})


def test_processor_defined_in_file(tmp_path):
    path = write(tmp_path, "def processor(host, name, value, ts):\n    return None\n")
    cfg, _ = config.load(path)
    assert cfg.processor("h", "n", 1, 2) is None


def test_every_option_has_doc_and_valid_default():
    for opt in config.OPTIONS:
        assert opt.doc
        opt.check(opt.default)


def test_every_option_is_documented_in_readme_and_example_config():
    from buckyproc import ROOT

    readme = (ROOT / "README.rst").read_text()
    example = (ROOT / "examples" / "config.py").read_text()
    for opt in config.OPTIONS:
        assert f"``{opt.name}``" in readme, opt.name
        assert f"\n{opt.name} = " in example, opt.name
    cfg, warnings = config.load(str(ROOT / "examples" / "config.py"))
    assert warnings == []


def test_config_fields_have_real_types():
    """Each field's type is its checker's return type, so a reader (and a type checker) knows
    what `cfg.statsd_port` holds without reading the checker."""
    types_by_name = {f.name: f.type for f in dataclasses.fields(config.Config)}
    assert types_by_name["statsd_port"] is int
    assert types_by_name["graphite_pickle_enabled"] is bool
    assert types_by_name["statsd_flush_time"] is float
    assert types_by_name["statsd_tcp_port"] == int | None
    assert all(t is not Any for t in types_by_name.values()), types_by_name


def test_an_option_without_a_config_field_is_caught_at_import():
    """A new row in OPTIONS needs its field in class Config, with the checker's type."""
    fields = {o.name: config.field_type(o.check) for o in config.OPTIONS[:-1]}
    short = type("Short", (), {"__annotations__": fields})
    last = config.OPTIONS[-1]
    with pytest.raises(TypeError, match=f"missing \\['{last.name}: "):
        config._option_fields(short)
    wrong = dict(fields, **{last.name: bytes})
    with pytest.raises(TypeError, match=f"Config.{last.name} is declared <class 'bytes'>"):
        config._option_fields(type("Wrong", (), {"__annotations__": wrong}))


def test_config_knows_which_options_were_given(tmp_path):
    """`given`: what the file or the command line set (a chosen http_port must bind; the
    default one may be taken, issue 19)."""
    path = write(tmp_path, "statsd_port = 9000\nunknown_thing = 1\n")
    cfg, _ = config.load(path, {"http_port": "9127"})
    assert cfg.given == {"statsd_port", "http_port"}
    assert config.load(None)[0].given == frozenset()


def test_http_degraded_status_is_200_or_503():
    assert config.make_config(http_degraded_status=503).http_degraded_status == 503
    with pytest.raises(ConfigError, match="http_degraded_status: expected 200 or 503, got 404"):
        config.make_config(http_degraded_status=404)
