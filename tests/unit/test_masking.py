"""web.masking and `Settings.masked`: no credential-like part of a configuration value is ever printed."""

from __future__ import annotations

import pytest

from web.masking import MASK, is_credential_name, mask_conninfo, mask_json_template, mask_url
from web.settings import Settings


@pytest.mark.parametrize(("url", "shown"), [
    # userinfo: the password of user:password, or a bare token used as the user
    ("postgresql://dh:Mk-2026@db/dh", "postgresql://dh:****@db/dh"),
    ("https://AKIA-token-123@sms.example.vn/send", "https://****@sms.example.vn/send"),
    ("https://user:@sms.example.vn/", "https://user:****@sms.example.vn/"),
    # query parameters whose names say "credential", whatever their spelling
    ("postgresql://dh@db/dh?sslmode=require&sslpassword=Mk-2026",
     "postgresql://dh@db/dh?sslmode=require&sslpassword=****"),
    ("https://sms.example.vn/send?to={to}&text={text}&apikey=Mk-2026",
     "https://sms.example.vn/send?to={to}&text={text}&apikey=****"),
    ("https://sms.example.vn/send?api_key=Mk-2026&to={to}", "https://sms.example.vn/send?api_key=****&to={to}"),
    ("https://sms.example.vn/send?API-KEY=Mk-2026", "https://sms.example.vn/send?API-KEY=****"),
    ("https://sms.example.vn/send?token=Mk-2026&access_token=Mk-2026",
     "https://sms.example.vn/send?token=****&access_token=****"),
    ("https://sms.example.vn/send?client_secret=Mk-2026&key=Mk-2026&sig=Mk-2026",
     "https://sms.example.vn/send?client_secret=****&key=****&sig=****"),
    ("https://sms.example.vn/send?passwd=Mk-2026&pwd=Mk-2026", "https://sms.example.vn/send?passwd=****&pwd=****"),
    ("https://sms.example.vn/send#access_token=Mk-2026", "https://sms.example.vn/send#access_token=****"),
    # userinfo and query together
    ("postgresql://dh:Mk-2026@db/dh?password=Mk-2026&sslmode=verify-full",
     "postgresql://dh:****@db/dh?password=****&sslmode=verify-full"),
    # nothing secret: unchanged
    ("postgresql://dh@db:5432/dh?sslmode=require", "postgresql://dh@db:5432/dh?sslmode=require"),
    ("https://sms.example.vn/send?to={to}&text={text}", "https://sms.example.vn/send?to={to}&text={text}"),
    # TURN/STUN URLs have no "//"
    ("turn:turn.example.vn:3478?transport=udp", "turn:turn.example.vn:3478?transport=udp"),
    ("turn:user:Mk-2026@turn.example.vn:3478", "turn:****@turn.example.vn:3478"),
    # libpq keyword/value connection strings
    ("host=db dbname=dh user=dh password=Mk-2026 sslpassword='Mk 2026'",
     "host=db dbname=dh user=dh password=**** sslpassword=****"),
])
def test_mask_url_hides_every_credential_like_part(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "Mk-2026" not in mask_url(url) and "AKIA" not in mask_url(url)


def test_an_unparseable_url_is_masked_whole() -> None:
    assert mask_url("https://[broken/host?apikey=Mk-2026") == MASK


@pytest.mark.parametrize("name", ["password", "sslpassword", "PASSWD", "apikey", "api_key", "Api-Key", "token",
                                  "access_token", "secret", "client_secret", "key", "auth", "signature",
                                  "credentials", "session_id"])
def test_credential_names(name: str) -> None:
    assert is_credential_name(name)


@pytest.mark.parametrize("name", ["to", "text", "host", "sslmode", "dbname", "user", "port", "reference"])
def test_ordinary_names_are_not_credentials(name: str) -> None:
    assert not is_credential_name(name)


def test_conninfo_keeps_ordinary_values() -> None:
    assert mask_conninfo("host=db port=5432 sslmode=require") == "host=db port=5432 sslmode=require"


def test_json_template_masks_credential_fields_at_any_depth() -> None:
    masked = mask_json_template('{"to": "{to}", "text": "{text}", "apiKey": "Mk-2026", '
                                '"auth": {"user": "u", "password": "Mk-2026"}}')
    assert "Mk-2026" not in masked and '"to": "{to}"' in masked and '"apiKey": "****"' in masked


def test_config_masks_secrets_inside_every_url_setting() -> None:
    s = Settings.from_env({
        "DATABASE_URL": "postgresql://dh:Mk-2026@db/dh?sslpassword=Mk-2026",
        "DONGHANH_SMS_GATEWAY": "http",
        "DONGHANH_SMS_URL": "https://sms.example.vn/send?to={to}&text={text}&apikey=Mk-2026",
        "DONGHANH_SMS_BODY": '{"to": "{to}", "text": "{text}", "token": "Mk-2026"}',
        "DONGHANH_PUBLIC_URL": "https://kham:Mk-2026@kham.example.vn",
        "DONGHANH_TURN_URLS": "turn:u:Mk-2026@turn.example.vn:3478",
        "DONGHANH_STUN_URLS": "stun:stun.example.vn:3478",
    })
    values = s.masked()
    assert "Mk-2026" not in "\n".join(values.values())
    assert values["sms_url"] == "https://sms.example.vn/send?to={to}&text={text}&apikey=****"
    assert values["database_url"] == "postgresql://dh:****@db/dh?sslpassword=****"
    assert values["stun_urls"] == "stun:stun.example.vn:3478"
