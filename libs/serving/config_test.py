"""ServerConfig: defaults, environment, flags, validation."""

import argparse
import dataclasses

import pytest

from libs.serving.config import _PARSERS, ServerConfig, env_name


def _parse(argv, environ):
    parser = argparse.ArgumentParser()
    ServerConfig.add_arguments(parser, environ=environ)
    return ServerConfig.from_args(parser.parse_args(argv))


def test_every_field_has_a_parser_and_an_env_name():
    names = {field.name for field in dataclasses.fields(ServerConfig)}
    assert names == set(_PARSERS)
    assert env_name("port") == "KMONO_PORT"


def test_defaults_without_env_or_flags():
    assert _parse([], environ={}) == ServerConfig()
    assert ServerConfig.from_env({}) == ServerConfig()
    assert ServerConfig().max_message_bytes == 64 * 1024 * 1024
    assert ServerConfig().metrics_port is None


def test_env_sets_defaults_and_flags_override_env():
    environ = {"KMONO_PORT": "7000", "KMONO_METRICS_PORT": "9100", "KMONO_GRACE_SECONDS": "2.5"}
    config = _parse(["--port", "7001"], environ)
    assert config.port == 7001
    assert config.metrics_port == 9100
    assert config.grace_seconds == 2.5
    assert ServerConfig.from_env(environ).port == 7000


def test_optional_fields_accept_none_words():
    environ = {"KMONO_METRICS_PORT": "none", "KMONO_DEFAULT_DEADLINE_SECONDS": "off"}
    assert ServerConfig.from_env(environ).metrics_port is None
    config = _parse(["--default-deadline-seconds", "30", "--metrics-port", ""], environ)
    assert config.default_deadline_seconds == 30.0
    assert config.metrics_port is None


def test_bad_env_value_names_the_variable():
    with pytest.raises(ValueError, match="KMONO_PORT: expected an integer, got 'abc'"):
        ServerConfig.from_env({"KMONO_PORT": "abc"})


def test_bad_env_value_is_an_argparse_error_naming_the_variable(capsys):
    with pytest.raises(SystemExit):
        _parse([], {"KMONO_MAX_CONCURRENT_RPCS": "lots"})
    assert "KMONO_MAX_CONCURRENT_RPCS" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"port": 70000}, "port must be in 0..65535"),
        ({"metrics_port": -1}, "metrics_port must be in 0..65535 or None"),
        ({"port": 9000, "metrics_port": 9000}, "metrics_port and port must differ"),
        ({"max_concurrent_rpcs": 0}, "max_concurrent_rpcs must be >= 1"),
        ({"max_message_bytes": 0}, "max_message_bytes must be in"),
        ({"grace_seconds": -1}, "grace_seconds must be >= 0"),
        ({"default_deadline_seconds": 0}, "default_deadline_seconds must be > 0"),
        ({"log_level": "LOUD"}, "log_level must be a logging level name"),
        ({"host": ""}, "host must not be empty"),
    ],
)
def test_validation_errors_are_clear(overrides, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**overrides)


def test_validation_reports_every_problem_at_once():
    with pytest.raises(ValueError, match="port must.*; max_concurrent_rpcs must"):
        ServerConfig(port=-1, max_concurrent_rpcs=0)


def test_address_brackets_ipv6_hosts():
    assert ServerConfig(host="127.0.0.1", port=5).address == "127.0.0.1:5"
    assert ServerConfig(host="::", port=5).address == "[::]:5"
    assert ServerConfig(host="[::1]", port=5).address == "[::1]:5"


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ServerConfig().port = 1
