"""HTTPS without a reverse proxy: the TLS context `donghanh serve` listens with (DONGHANH_TLS_CERT/KEY).

Browsers give the camera only to `https://` pages (or localhost), so a station whose phones join over
its wifi needs TLS; a proxy (docs/deploy.md) is the usual way, this is the one-process way.
"""

from __future__ import annotations

import ssl

from web.settings import ConfigError, Settings


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """A server-side TLS context from the configured certificate and key, or None when TLS is off.
    Raises ConfigError naming the files when they cannot be used (not PEM, key not matching...)."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"DONGHANH_TLS_CERT/DONGHANH_TLS_KEY: cannot load {settings.tls_cert} with "
                          f"{settings.tls_key}: {exc.strerror or exc}") from None
    return context
