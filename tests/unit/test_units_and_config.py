from __future__ import annotations

import re
from pathlib import Path

import pytest

from cortexctl.config import load_settings
from cortexctl.errors import ConfigError, InvalidArgument
from cortexctl.units import format_duration, parse_bytes, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("12h", 43200),
        ("7d", 604800),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("1h30m", 5400),
        ("2d12h", 216000),
        ("1m 30s", 90),
        (45, 45),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten", "5x", "-1s", "1 week", "1h30", "10M"])
def test_bad_durations_name_the_format(text: str) -> None:
    with pytest.raises(InvalidArgument, match="30s, 10m, 12h, 7d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["10", "1.5", " 30 "])
def test_a_bare_number_is_refused_with_a_hint(text: str) -> None:
    with pytest.raises(InvalidArgument, match=f"give a unit, e.g. {text.strip()}s"):
        parse_duration(text)


def test_bytes_and_formatting() -> None:
    assert parse_bytes("64KiB") == 65536
    assert parse_bytes("1MiB") == 1048576
    assert format_duration(90) == "1.5m"
    with pytest.raises(InvalidArgument):
        parse_bytes("lots")


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[hub]\nlisten = "127.0.0.1:1"\nheartbeat_interval = "2s"\n[sync]\nlock_wait = "9s"\n'
    )
    env = {"CORTEX_LISTEN": "127.0.0.1:2", "CORTEX_HEARTBEAT_INTERVAL": "3s"}
    settings = load_settings({"hub.listen": "127.0.0.1:3"}, str(config), env)
    assert settings["hub.listen"] == "127.0.0.1:3"
    assert settings.sources["hub.listen"] == "flag"
    assert settings["hub.heartbeat_interval"] == 3.0
    assert settings.sources["hub.heartbeat_interval"] == "env CORTEX_HEARTBEAT_INTERVAL"
    assert settings["sync.lock_wait"] == 9.0
    assert settings.sources["sync.lock_wait"].startswith("file ")
    assert settings["sync.lock_ttl"] == 600.0
    assert settings.sources["sync.lock_ttl"] == "default"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[hub\n", "not valid TOML"),
        ('[hub]\nlisten_on = "x"\n', "unknown key 'hub.listen_on'"),
        ('[hub]\nheartbeat_interval = "soon"\n', "hub.heartbeat_interval"),
        ('listen = "x"\n', "must be a [section] table"),
    ],
)
def test_bad_config_files_name_file_key_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_settings({}, str(config), {})
    assert str(config) in str(caught.value)


def test_sqlite_is_the_default_store_in_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings({}, None, {"CORTEX_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path}/cortex.db"
    assert settings.mirrors_dir == tmp_path / "mirrors"


def test_typed_sections_read_the_same_values_with_their_provenance(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[sync]\nmax_chunk_bytes = "64KiB"\n')
    env = {"CORTEX_HEARTBEAT_INTERVAL": "3s", "CORTEX_DEFAULT_ALLOWED_COMMANDS": "git,make"}
    settings = load_settings({"hub.listen": "127.0.0.1:3"}, str(config), env)
    assert settings.hub.listen == "127.0.0.1:3" and settings.source("hub.listen") == "flag"
    assert settings.hub.heartbeat_interval == 3.0
    assert settings.source("hub.heartbeat_interval") == "env CORTEX_HEARTBEAT_INTERVAL"
    assert settings.sync.max_chunk_bytes == 65536
    assert settings.source("sync.max_chunk_bytes") == f"file {config}"
    assert settings.sandbox.default_allowed_commands == ("git", "make")
    assert settings.jobs.mirror_gc_interval == 3600.0
    assert settings.source("jobs.mirror_gc_interval") == "default"


def test_every_setting_has_a_typed_attribute_of_its_parsed_type() -> None:
    import dataclasses
    import typing

    from cortexctl.config import SECTIONS, SETTINGS, Settings

    settings = load_settings({}, None, {})
    attributes = {
        f"{name}.{item.name}": item
        for name, cls in SECTIONS.items()
        for item in dataclasses.fields(cls)
    }
    keys = {setting.key for setting in SETTINGS}
    missing = sorted(keys - set(attributes))
    assert not missing, f"add these to their section class in cortexctl/config.py: {missing}"
    assert set(attributes) <= keys
    for key, item in attributes.items():
        section, name = key.split(".", 1)
        value = getattr(getattr(settings, section), name)
        assert value == settings[key]
        expected = {"str": str, "int": int, "float": float, "tuple[str, ...]": tuple}[
            str(item.type)
        ]
        assert isinstance(value, expected), (key, value)
    # settings["x.y"] is typed per key: one Literal overload per typed key, same type.
    typed = {}
    for overload in typing.get_overloads(Settings.__getitem__):
        key_type = overload.__annotations__["key"]
        if key_type.startswith("Literal["):
            typed[key_type[len('Literal["') : -2]] = overload.__annotations__["return"]
    assert typed == {key: str(item.type) for key, item in attributes.items()}
