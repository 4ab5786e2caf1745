"""Effective configuration: environment variables (`DONGHANH_*`, `DATABASE_URL`) → one frozen dataclass.

Defaults serve a laptop demo; production values are in docs/deploy.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import platformdirs

from web import masking
from web.client import parse_networks


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, name: str = "duration") -> int:
    """Parse `90`, `90s`, `15m`, `24h` or `7d` into seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{name}: expected a duration like 90s, 15m, 24h or 7d, got {text!r}")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(f"{name}: must be positive, got {text!r}")
    return seconds


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _bool_or_auto(text: str, *, name: str) -> bool | None:
    value = text.strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected auto, true or false, got {text!r}")


def parse_escalation_windows(text: str) -> tuple[tuple[str, int, int], ...]:
    """`urgent=15m/5m,priority=4h/1h`: per urgency, the deadline and the offer window (ConfigError if wrong)."""
    from care.escalation import policies  # the rules live there; this only reads the variable

    found: list[tuple[str, int, int]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        urgency, _, durations = item.partition("=")
        deadline, _, window = durations.partition("/")
        if not window:
            raise ConfigError(f"DONGHANH_ESCALATION_WINDOWS: expected urgency=deadline/window, got {item!r}")
        found.append((urgency.strip(), parse_duration(deadline.strip(), name="DONGHANH_ESCALATION_WINDOWS"),
                      parse_duration(window.strip(), name="DONGHANH_ESCALATION_WINDOWS")))
    try:
        policies({u: (timedelta(seconds=d), timedelta(seconds=w)) for u, d, w in found})
    except ValueError as exc:
        raise ConfigError(f"DONGHANH_ESCALATION_WINDOWS: {exc}") from None
    return tuple(found)


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1,
         maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}: must be at most {maximum}, got {value}")
    return value


def _existing_file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"{name}: no such file: {raw}")
    return path


def default_data_dir() -> Path:
    """Per-user data folder (e.g. ~/.local/share/donghanh on Linux)."""
    return Path(platformdirs.user_data_dir("donghanh", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything the process needs to know about its deployment."""

    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    secret_key: str = ""
    previous_secret_keys: tuple[str, ...] = ()
    link_ttl_s: int = 24 * 3600
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    turn_ttl_s: int = 3600
    ice_transport_policy: str = "all"
    requeue_grace_s: int = 60
    offline_grace_s: int = 600
    max_message_bytes: int = 64 * 1024
    heartbeat_s: int = 20
    socket_queue: int = 256
    hello_timeout_s: float = 10.0
    max_sockets_per_address: int = 200
    session_check_s: float = 5.0
    tb_clip_retention_days: int = 30  # issue 11: reviewed dose clips are deleted this many days after review
    secure_cookies: bool | None = None
    log_level: str = "INFO"
    default_lang: str = "vi"
    session_ttl_s: int = 12 * 3600
    sms_gateway: str = "outbox"
    sms_url: str = ""
    sms_auth_header: str = ""
    sms_body: str = ""
    sms_retries: int = 3
    appointment_late_s: int = 3600
    queue_near_minutes: int = 10
    scheduler_interval_s: float = 1.0
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    signin_throttle: bool = True
    # Escalation deadlines and offer windows overriding care.escalation's defaults: urgency → (deadline s, window s).
    escalation_windows: tuple[tuple[str, int, int], ...] = ()
    metrics_token: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    bus: bool = False
    log_format: str = "text"

    @property
    def base_url(self) -> str:
        """The URL people reach this server at (links in SMS are built from it)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::", "::1") else self.host
        return f"{'https' if self.tls_cert else 'http'}://{host}:{self.port}"

    @property
    def cookies_secure(self) -> bool:
        if self.secure_cookies is not None:
            return self.secure_cookies
        return self.base_url.startswith("https://")

    def masked(self) -> dict[str, str]:
        """Effective values as text, every credential-like part masked, for `donghanh config`."""
        out: dict[str, str] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("secret_key", "turn_secret", "sms_auth_header", "metrics_token"):
                text = masking.mask_secret(value)
            elif f.name == "previous_secret_keys":
                text = f"{len(value)} key(s)"
            elif f.name == "database_url":
                text = masking.mask_url(value) if value else "(embedded PostgreSQL)"
            elif f.name in ("sms_url", "public_url") and value:
                text = masking.mask_url(value)
            elif f.name == "sms_body" and value:
                text = masking.mask_json_template(value)
            elif f.name in ("stun_urls", "turn_urls"):
                text = ",".join(masking.mask_url(url) for url in value) or "(none)"
            elif isinstance(value, tuple):
                text = ",".join(value) or "(none)"
            elif f.name in ("tls_cert", "tls_key"):
                text = str(value) if value else "(unset)"
            elif value is None:
                text = "auto"
            elif value == "":
                text = "(unset)"
            else:
                text = str(value)
            out[f.name] = text
        out["base_url"] = masking.mask_url(self.base_url)
        return out

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from the environment; raises ConfigError naming the bad variable."""
        env = os.environ if env is None else env
        data_dir = Path(env["DONGHANH_DATA_DIR"]).expanduser() if env.get("DONGHANH_DATA_DIR") else (
            default_data_dir()
        )
        lang = env.get("DONGHANH_DEFAULT_LANG", "vi") or "vi"
        if lang not in ("vi", "en"):
            raise ConfigError(f"DONGHANH_DEFAULT_LANG: expected vi or en, got {lang!r}")
        ttl_raw = env.get("DONGHANH_LINK_TTL", "24h") or "24h"
        turn_ttl_raw = env.get("DONGHANH_TURN_TTL", "1h") or "1h"
        gateway = (env.get("DONGHANH_SMS_GATEWAY", "outbox") or "outbox").strip().lower()
        if gateway not in ("outbox", "http"):
            raise ConfigError(f"DONGHANH_SMS_GATEWAY: expected outbox or http, got {gateway!r}")
        sms_url = env.get("DONGHANH_SMS_URL", "").strip()
        if gateway == "http" and not sms_url.startswith(("http://", "https://")):
            raise ConfigError("DONGHANH_SMS_URL: the http gateway needs an http:// or https:// URL")
        sms_body = env.get("DONGHANH_SMS_BODY", "").strip()
        if sms_body:
            try:
                json.loads(sms_body)
            except ValueError:
                raise ConfigError("DONGHANH_SMS_BODY: expected a JSON template such as "
                                  '{"to": "{to}", "text": "{text}"}') from None
        late_raw = env.get("DONGHANH_APPOINTMENT_LATE", "60m") or "60m"
        proxies = _csv(env.get("DONGHANH_TRUSTED_PROXIES", "127.0.0.1,::1"))
        try:
            parse_networks(proxies)
        except ValueError as exc:
            raise ConfigError(f"DONGHANH_TRUSTED_PROXIES: {exc}") from None
        ice_policy = (env.get("DONGHANH_ICE_TRANSPORT_POLICY", "all") or "all").strip().lower()
        if ice_policy not in ("all", "relay"):
            raise ConfigError(f"DONGHANH_ICE_TRANSPORT_POLICY: expected all or relay, got {ice_policy!r}")
        log_format = (env.get("DONGHANH_LOG_FORMAT", "text") or "text").strip().lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"DONGHANH_LOG_FORMAT: expected text or json, got {log_format!r}")
        tls_cert, tls_key = (_existing_file(env, name) for name in ("DONGHANH_TLS_CERT", "DONGHANH_TLS_KEY"))
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError("DONGHANH_TLS_CERT and DONGHANH_TLS_KEY: set both (a certificate and its key) or "
                              "neither")
        throttle = _bool_or_auto(env.get("DONGHANH_SIGNIN_THROTTLE", "true"), name="DONGHANH_SIGNIN_THROTTLE")
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            data_dir=data_dir,
            host=env.get("DONGHANH_HOST", "127.0.0.1") or "127.0.0.1",
            port=_int(env, "DONGHANH_PORT", 8080, maximum=65535),
            public_url=env.get("DONGHANH_PUBLIC_URL") or None,
            secret_key=env.get("DONGHANH_SECRET_KEY", ""),
            previous_secret_keys=_csv(env.get("DONGHANH_PREVIOUS_SECRET_KEYS", "")),
            link_ttl_s=parse_duration(ttl_raw, name="DONGHANH_LINK_TTL"),
            stun_urls=_csv(env.get("DONGHANH_STUN_URLS", "")),
            turn_urls=_csv(env.get("DONGHANH_TURN_URLS", "")),
            turn_secret=env.get("DONGHANH_TURN_SECRET", ""),
            turn_ttl_s=parse_duration(turn_ttl_raw, name="DONGHANH_TURN_TTL"),
            ice_transport_policy=ice_policy,
            requeue_grace_s=_int(env, "DONGHANH_REQUEUE_GRACE", 60),
            offline_grace_s=parse_duration(env.get("DONGHANH_OFFLINE_GRACE", "10m") or "10m",
                                           name="DONGHANH_OFFLINE_GRACE"),
            max_message_bytes=_int(env, "DONGHANH_MAX_MESSAGE_BYTES", 64 * 1024, minimum=4096),
            heartbeat_s=_int(env, "DONGHANH_HEARTBEAT", 20),
            socket_queue=_int(env, "DONGHANH_SOCKET_QUEUE", 256, minimum=8),
            hello_timeout_s=_int(env, "DONGHANH_HELLO_TIMEOUT", 10, maximum=300),
            max_sockets_per_address=_int(env, "DONGHANH_MAX_SOCKETS_PER_ADDRESS", 200),
            session_check_s=_int(env, "DONGHANH_SESSION_CHECK", 5, maximum=300),
            tb_clip_retention_days=_int(env, "DONGHANH_TB_CLIP_RETENTION_DAYS", 30, maximum=3650),
            secure_cookies=_bool_or_auto(env.get("DONGHANH_SECURE_COOKIES", "auto"),
                                         name="DONGHANH_SECURE_COOKIES"),
            log_level=(env.get("DONGHANH_LOG_LEVEL", "INFO") or "INFO").upper(),
            default_lang=lang,
            sms_gateway=gateway,
            sms_url=sms_url,
            sms_auth_header=env.get("DONGHANH_SMS_AUTH_HEADER", ""),
            sms_body=sms_body,
            sms_retries=_int(env, "DONGHANH_SMS_RETRIES", 3, minimum=0, maximum=10),
            appointment_late_s=parse_duration(late_raw, name="DONGHANH_APPOINTMENT_LATE"),
            queue_near_minutes=_int(env, "DONGHANH_QUEUE_NEAR_MINUTES", 10, maximum=240),
            trusted_proxies=proxies,
            signin_throttle=throttle is not False,
            escalation_windows=parse_escalation_windows(env.get("DONGHANH_ESCALATION_WINDOWS", "")),
            metrics_token=env.get("DONGHANH_METRICS_TOKEN", "").strip(),
            log_format=log_format,
            tls_cert=tls_cert,
            tls_key=tls_key,
            bus=_bool_or_auto(env.get("DONGHANH_BUS", "false"), name="DONGHANH_BUS") is True,
        )

    def with_secret(self) -> Settings:
        """Return settings whose secret key is set: from config, or generated once and kept in the data dir."""
        if self.secret_key:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_file = self.data_dir / "secret_key"
        if not key_file.exists():
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
        return dataclasses.replace(self, secret_key=key_file.read_text().strip())


# Documented configuration: (variable, default, meaning). README and `donghanh config --help` use it.
CONFIG_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("DONGHANH_ESCALATION_WINDOWS", "urgent=15m/5m,priority=4h/1h,routine=3d/1d",
     "specialist escalation: per urgency, the deadline and one specialist's offer window"),
    ("DATABASE_URL", "(unset)", "PostgreSQL URL; unset starts an embedded PostgreSQL under the data dir"),
    ("DONGHANH_DATA_DIR", "per-user data folder", "embedded database, generated secret key"),
    ("DONGHANH_HOST", "127.0.0.1", "address to listen on (0.0.0.0 to reach it from phones on the LAN)"),
    ("DONGHANH_PORT", "8080", "port to listen on"),
    ("DONGHANH_PUBLIC_URL", "http://localhost:PORT", "URL patients reach; join links are built from it"),
    ("DONGHANH_SECRET_KEY", "generated, kept in data dir", "HS256 key for join links"),
    ("DONGHANH_PREVIOUS_SECRET_KEYS", "(none)", "comma-separated old keys still accepted (rotation)"),
    ("DONGHANH_LINK_TTL", "24h", "default lifetime of a patient join link"),
    ("DONGHANH_STUN_URLS", "(none)", "comma-separated stun: URLs given to browsers"),
    ("DONGHANH_TURN_URLS", "(none)", "comma-separated turn:/turns: URLs"),
    ("DONGHANH_TURN_SECRET", "(unset)", "coturn static-auth-secret; time-limited TURN credentials"),
    ("DONGHANH_TURN_TTL", "1h", "lifetime of TURN credentials"),
    ("DONGHANH_ICE_TRANSPORT_POLICY", "all", "all, or relay: browsers use only TURN-relayed paths (hides "
                                             "addresses from the peer; proves TURN works)"),
    ("DONGHANH_REQUEUE_GRACE", "60", "seconds before a patient whose doctor dropped goes back to the queue"),
    ("DONGHANH_OFFLINE_GRACE", "10m", "how long a patient whose page closed keeps their place in the queue "
                                      "(skipped by 'take next' meanwhile)"),
    ("DONGHANH_MAX_MESSAGE_BYTES", "65536", "largest websocket message accepted"),
    ("DONGHANH_HEARTBEAT", "20", "seconds of silence before a websocket is pinged "
                                 "(dropped if still silent half as long later)"),
    ("DONGHANH_SOCKET_QUEUE", "256", "messages waiting for one slow websocket before it is closed (1013)"),
    ("DONGHANH_HELLO_TIMEOUT", "10", "seconds a new websocket has to say hello before it is closed (4408)"),
    ("DONGHANH_MAX_SOCKETS_PER_ADDRESS", "200", "open websockets per client IP address (a station behind one "
                                                "NAT shares one); more are refused with 429"),
    ("DONGHANH_SESSION_CHECK", "5", "seconds between checks that closes websockets of ended staff sessions "
                                    "and revoked links (sign-out here closes them at once)"),
    ("DONGHANH_TB_CLIP_RETENTION_DAYS", "30", "days after review when a TB dose video is deleted (audited)"),
    ("DONGHANH_SECURE_COOKIES", "auto", "Secure cookies: auto (when PUBLIC_URL is https), true, false"),
    ("DONGHANH_LOG_LEVEL", "INFO", "log level"),
    ("DONGHANH_LOG_FORMAT", "text", "text, or json: one JSON object a line for log collectors"),
    ("DONGHANH_TLS_CERT", "(unset)", "PEM certificate (chain) file: serve HTTPS and WSS directly, without a "
                                     "reverse proxy"),
    ("DONGHANH_TLS_KEY", "(unset)", "PEM private key file of DONGHANH_TLS_CERT"),
    ("DONGHANH_BUS", "false", "true when several app processes or machines share this database: queue "
                              "changes, alerts, pairing, endings and requeues reach every process's sockets "
                              "(PostgreSQL LISTEN/NOTIFY)"),
    ("DONGHANH_METRICS_TOKEN", "(unset)", "bearer token a Prometheus scraper sends for /metrics from another "
                                          "machine (this machine needs none; secret)"),
    ("DONGHANH_DEFAULT_LANG", "vi", "default UI language (vi or en)"),
    ("DONGHANH_SMS_GATEWAY", "outbox", "outbox (messages stored and shown at /staff/outbox) or http (SMS gateway)"),
    ("DONGHANH_SMS_URL", "(unset)", "http gateway: URL with {to} and {text} placeholders; a POST with a JSON body "
                                    "when it has none"),
    ("DONGHANH_SMS_AUTH_HEADER", "(unset)", "http gateway: header sent with each request, e.g. "
                                            "'Authorization: Bearer …' (secret)"),
    ("DONGHANH_SMS_BODY", "{\"to\",\"text\",\"reference\"}", "http gateway without placeholders in the URL: "
                                                             "JSON body template with {to} {text} {reference}"),
    ("DONGHANH_SMS_RETRIES", "3", "http gateway: retries after a 5xx, timeout or connection error"),
    ("DONGHANH_APPOINTMENT_LATE", "60m", "how long after an appointment's time its link still works"),
    ("DONGHANH_TRUSTED_PROXIES", "127.0.0.1,::1", "comma-separated addresses/networks of reverse proxies whose "
                                                  "X-Forwarded-For names the client (sign-in throttling)"),
    ("DONGHANH_SIGNIN_THROTTLE", "true", "slow down and temporarily lock repeated failed sign-ins (false only "
                                         "for benchmarks)"),
    ("DONGHANH_QUEUE_NEAR_MINUTES", "10", "SMS 'the doctor will see you in about N minutes' when the wait is "
                                          "at most this"),
)
