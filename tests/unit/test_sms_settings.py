"""Settings of the invitation area: SMS gateway, retries, appointment lateness, queue SMS threshold."""

from __future__ import annotations

import pytest

from web.settings import ConfigError, Settings


def test_defaults_keep_messages_in_the_outbox() -> None:
    s = Settings.from_env({})
    assert (s.sms_gateway, s.sms_url, s.sms_auth_header, s.sms_retries) == ("outbox", "", "", 3)
    assert s.appointment_late_s == 3600 and s.queue_near_minutes == 10
    assert s.masked()["sms_url"] == "(unset)" and s.masked()["sms_auth_header"] == "(unset)"


def test_http_gateway_from_the_environment_with_the_auth_header_masked() -> None:
    s = Settings.from_env({"DONGHANH_SMS_GATEWAY": "HTTP", "DONGHANH_SMS_URL": "https://sms.example.vn/send",
                           "DONGHANH_SMS_AUTH_HEADER": "Authorization: Bearer very-secret-token-42",
                           "DONGHANH_SMS_RETRIES": "5", "DONGHANH_APPOINTMENT_LATE": "90m",
                           "DONGHANH_QUEUE_NEAR_MINUTES": "15", "DONGHANH_SMS_BODY": '{"phone": "{to}"}'})
    assert (s.sms_gateway, s.sms_retries, s.appointment_late_s, s.queue_near_minutes) == ("http", 5, 5400, 15)
    assert s.sms_body == '{"phone": "{to}"}'
    masked = s.masked()["sms_auth_header"]
    assert "secret" not in masked and masked.startswith("****")


@pytest.mark.parametrize(("env", "variable"), [
    ({"DONGHANH_SMS_GATEWAY": "zalo"}, "DONGHANH_SMS_GATEWAY"),
    ({"DONGHANH_SMS_GATEWAY": "http"}, "DONGHANH_SMS_URL"),
    ({"DONGHANH_SMS_GATEWAY": "http", "DONGHANH_SMS_URL": "ftp://x"}, "DONGHANH_SMS_URL"),
    ({"DONGHANH_SMS_RETRIES": "11"}, "DONGHANH_SMS_RETRIES"),
    ({"DONGHANH_SMS_RETRIES": "-1"}, "DONGHANH_SMS_RETRIES"),
    ({"DONGHANH_APPOINTMENT_LATE": "0"}, "DONGHANH_APPOINTMENT_LATE"),
    ({"DONGHANH_QUEUE_NEAR_MINUTES": "0"}, "DONGHANH_QUEUE_NEAR_MINUTES"),
    ({"DONGHANH_SMS_BODY": "{to}"}, "DONGHANH_SMS_BODY"),
])
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        Settings.from_env(env)
