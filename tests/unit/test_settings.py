"""web.settings: environment → Settings, durations, secure cookies, masking, the generated secret key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from web.settings import CONFIG_VARIABLES, ConfigError, Settings, default_data_dir, parse_duration


def test_defaults_from_an_empty_environment() -> None:
    s = Settings.from_env({})
    assert s.database_url is None
    assert s.data_dir == default_data_dir()
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.public_url is None and s.base_url == "http://localhost:8080"
    assert s.secret_key == "" and s.previous_secret_keys == ()
    assert s.link_ttl_s == 24 * 3600 and s.turn_ttl_s == 3600
    assert s.stun_urls == () and s.turn_urls == () and s.turn_secret == ""
    assert s.requeue_grace_s == 60 and s.heartbeat_s == 20 and s.max_message_bytes == 64 * 1024
    assert s.secure_cookies is None and s.cookies_secure is False
    assert s.log_level == "INFO" and s.default_lang == "vi"


def test_values_from_the_environment() -> None:
    s = Settings.from_env({
        "DATABASE_URL": "postgresql://dh@db/dh", "DONGHANH_DATA_DIR": "~/dh-data", "DONGHANH_HOST": "0.0.0.0",
        "DONGHANH_PORT": "9000", "DONGHANH_PUBLIC_URL": "https://kham.example.vn/",
        "DONGHANH_PREVIOUS_SECRET_KEYS": " old1 , ,old2", "DONGHANH_LINK_TTL": "7d",
        "DONGHANH_STUN_URLS": "stun:a:3478,stun:b:3478", "DONGHANH_REQUEUE_GRACE": "90",
        "DONGHANH_LOG_LEVEL": "debug", "DONGHANH_DEFAULT_LANG": "en"})
    assert s.database_url == "postgresql://dh@db/dh"
    assert s.data_dir == Path("~/dh-data").expanduser()
    assert (s.host, s.port) == ("0.0.0.0", 9000)
    assert s.base_url == "https://kham.example.vn"
    assert s.previous_secret_keys == ("old1", "old2")
    assert s.link_ttl_s == 7 * 86400
    assert s.stun_urls == ("stun:a:3478", "stun:b:3478")
    assert s.requeue_grace_s == 90 and s.log_level == "DEBUG" and s.default_lang == "en"


def test_base_url_names_the_host_when_listening_on_a_specific_address() -> None:
    assert Settings(host="192.168.1.10", port=8443).base_url == "http://192.168.1.10:8443"
    assert Settings(host="::", port=80).base_url == "http://localhost:80"


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800), (" 2h ", 7200), ("1 m", 60),
])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5m", "1.5h", "h", "10w", "1h30m", "ten", "24 hours"])
def test_bad_duration_is_a_config_error_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match="^DONGHANH_TURN_TTL: "):
        parse_duration(text, name="DONGHANH_TURN_TTL")


@pytest.mark.parametrize("variable", ["DONGHANH_LINK_TTL", "DONGHANH_TURN_TTL", "DONGHANH_OFFLINE_GRACE"])
def test_bad_duration_in_the_environment_names_the_variable(variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: .*'soon'"):
        Settings.from_env({variable: "soon"})


@pytest.mark.parametrize("port", ["abc", "80.5", "0", "-1", "65536", "99999"])
def test_bad_port_is_a_config_error(port: str) -> None:
    with pytest.raises(ConfigError, match="^DONGHANH_PORT: "):
        Settings.from_env({"DONGHANH_PORT": port})


def test_edge_ports_are_accepted() -> None:
    assert Settings.from_env({"DONGHANH_PORT": "1"}).port == 1
    assert Settings.from_env({"DONGHANH_PORT": "65535"}).port == 65535
    assert Settings.from_env({"DONGHANH_PORT": ""}).port == 8080


@pytest.mark.parametrize(("variable", "value"), [
    ("DONGHANH_MAX_MESSAGE_BYTES", "1024"),  # below the 4096 minimum
    ("DONGHANH_REQUEUE_GRACE", "0"),
    ("DONGHANH_HEARTBEAT", "often"),
    ("DONGHANH_DEFAULT_LANG", "fr"),
    ("DONGHANH_SECURE_COOKIES", "maybe"),
])
def test_other_bad_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        Settings.from_env({variable: value})


@pytest.mark.parametrize(("value", "public_url", "secure"), [
    ("auto", None, False),
    ("auto", "https://kham.example.vn", True),
    ("auto", "http://192.168.1.10:8080", False),
    ("", "https://kham.example.vn", True),
    ("true", None, True),
    ("1", None, True),
    ("YES", None, True),
    ("on", "http://lan", True),
    ("false", "https://kham.example.vn", False),
    ("0", "https://kham.example.vn", False),
    ("off", None, False),
])
def test_secure_cookies_auto_true_false(value: str, public_url: str | None, secure: bool) -> None:
    env = {"DONGHANH_SECURE_COOKIES": value, **({"DONGHANH_PUBLIC_URL": public_url} if public_url else {})}
    assert Settings.from_env(env).cookies_secure is secure


# ---- masking -------------------------------------------------------------------------------------------

SECRET = "s3cr3t-signing-key-0123456789-abcdef"
TURN = "turn-static-auth-secret-XYZ-987654"


def masked_text(s: Settings) -> str:
    return "\n".join(f"{k} {v}" for k, v in s.masked().items())


def test_masked_hides_the_secret_key_and_turn_secret() -> None:
    s = Settings.from_env({"DONGHANH_SECRET_KEY": SECRET, "DONGHANH_TURN_SECRET": TURN,
                           "DONGHANH_PREVIOUS_SECRET_KEYS": "old-key-one-1234567,old-key-two-7654321"})
    values = s.masked()
    assert values["secret_key"].startswith("****") and values["turn_secret"].startswith("****")
    assert values["previous_secret_keys"] == "2 key(s)"
    text = masked_text(s)
    for secret in (SECRET, TURN, SECRET[:12], TURN[:12], "old-key-one", "old-key-two"):
        assert secret not in text


def test_masked_reveals_nothing_of_a_short_secret() -> None:
    values = Settings(secret_key="short", turn_secret="").masked()
    assert values["secret_key"] == "****"
    assert values["turn_secret"] == "(unset)"


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://donghanh:Mk-2026!x@db.example.vn:5432/donghanh",
     "postgresql://donghanh:****@db.example.vn:5432/donghanh"),
    ("postgres://u:p%40ss@localhost/dh?sslmode=require", "postgres://u:****@localhost/dh?sslmode=require"),
    ("postgresql://dh@db/dh?sslmode=require&password=Mk-2026!x", "postgresql://dh@db/dh?sslmode=require&password=****"),
    ("postgresql://dh@db/dh", "postgresql://dh@db/dh"),
])
def test_masked_hides_the_database_password(url: str, shown: str) -> None:
    s = Settings.from_env({"DATABASE_URL": url})
    assert s.masked()["database_url"] == shown
    assert "Mk-2026" not in masked_text(s) and "p%40ss" not in masked_text(s)


def test_masked_lists_every_setting_and_the_base_url() -> None:
    values = Settings().masked()
    assert values["database_url"] == "(embedded PostgreSQL)"
    assert values["secure_cookies"] == "auto" and values["stun_urls"] == "(none)"
    assert values["base_url"] == "http://localhost:8080"
    assert {"host", "port", "link_ttl_s", "data_dir"} <= set(values)


def test_every_documented_variable_is_read() -> None:
    import inspect

    source = inspect.getsource(Settings.from_env)
    for variable, _, _ in CONFIG_VARIABLES:
        assert f'"{variable}"' in source, variable


# ---- the generated secret key --------------------------------------------------------------------------

def test_with_secret_generates_a_key_once_and_reuses_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = Settings(data_dir=data_dir).with_secret()
    key_file = data_dir / "secret_key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 48
    assert key_file.read_text().strip() == first.secret_key
    again = Settings(data_dir=data_dir).with_secret()
    assert again.secret_key == first.secret_key
    assert Settings(data_dir=tmp_path / "other").with_secret().secret_key != first.secret_key


def test_with_secret_keeps_a_configured_key_and_writes_nothing(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data", secret_key=SECRET)
    assert s.with_secret() is s
    assert not (tmp_path / "data").exists()


def test_offline_grace_defaults_to_ten_minutes_and_reads_a_duration() -> None:
    assert Settings.from_env({}).offline_grace_s == 600
    assert Settings.from_env({"DONGHANH_OFFLINE_GRACE": "3m"}).offline_grace_s == 180


def test_ice_transport_policy_is_all_or_relay() -> None:
    assert Settings.from_env({}).ice_transport_policy == "all"
    assert Settings.from_env({"DONGHANH_ICE_TRANSPORT_POLICY": "Relay"}).ice_transport_policy == "relay"
    with pytest.raises(ConfigError, match="DONGHANH_ICE_TRANSPORT_POLICY"):
        Settings.from_env({"DONGHANH_ICE_TRANSPORT_POLICY": "direct"})


def test_tls_needs_both_an_existing_certificate_and_key(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    with pytest.raises(ConfigError, match="set both"):
        Settings.from_env({"DONGHANH_TLS_CERT": str(cert)})
    with pytest.raises(ConfigError, match="DONGHANH_TLS_KEY: no such file"):
        Settings.from_env({"DONGHANH_TLS_CERT": str(cert), "DONGHANH_TLS_KEY": str(tmp_path / "missing.pem")})
    settings = Settings.from_env({"DONGHANH_TLS_CERT": str(cert), "DONGHANH_TLS_KEY": str(key)})
    assert settings.tls_cert == cert and settings.base_url == "https://localhost:8080" and settings.cookies_secure
