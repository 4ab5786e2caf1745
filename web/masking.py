"""Masking credentials in configuration values before they are printed (`donghanh config`, logs).

A URL can carry a secret in three places: its userinfo (`user:password@`, or a bare token `token@`),
its query (`?apikey=…`, `&sslpassword=…`, `&token=…`) and, for a JSON body template, a field whose
name says it is a credential. Each is replaced by `****`; everything else is kept so the value still
tells an operator where the app connects.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "****"

# A parameter or field is a credential when its name (lower case, separators dropped) contains one of
# these: password/passwd/pass/pwd, secret, token, key (apikey, api_key, sslkey, key), auth, sig(nature),
# credential, session. Over-masking a harmless value (sslkey is a file path) costs nothing.
_CREDENTIAL_NAME = re.compile(r"pass|pwd|secret|token|key|auth|sig|credential|session|cookie|bearer")


def is_credential_name(name: str) -> bool:
    """True when a parameter/field name looks like it holds a secret."""
    return bool(_CREDENTIAL_NAME.search(re.sub(r"[-_.\s]", "", name.lower())))


def _mask_userinfo(scheme: str, netloc: str) -> str:
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, _password = userinfo.partition(":")
    # `user:password@` keeps the user (an operator needs it). A bare `dh@` is a database role name;
    # in any other URL (an SMS gateway's) a bare userinfo is how APIs take a token: the secret itself.
    if colon:
        return f"{user}:{MASK}@{host}"
    return netloc if scheme.startswith("postgres") else f"{MASK}@{host}"


def _mask_query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        parts.append(f"{name}={MASK}" if eq and value and is_credential_name(name) else part)
    return "&".join(parts)


def mask_url(url: str) -> str:
    """The URL with its userinfo password (or bare userinfo), credential-like query values and
    credential-like fragment parameters masked. Also works for libpq `key=value` connection strings."""
    if "://" not in url:
        scheme = re.match(r"^(stuns?|turns?):", url)
        return _mask_opaque(url, scheme.group(0)) if scheme else mask_conninfo(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL: mask it all rather than risk printing a secret
        return MASK
    return urlunsplit((parts.scheme, _mask_userinfo(parts.scheme, parts.netloc), parts.path, _mask_query(parts.query),
                       _mask_query(parts.fragment)))


def _mask_opaque(url: str, scheme: str) -> str:
    """`turn:user:pass@host:3478?transport=udp` (no `//`): userinfo and credential parameters masked."""
    rest, q, query = url[len(scheme):].partition("?")
    if "@" in rest:
        rest = MASK + "@" + rest.rpartition("@")[2]
    return scheme + rest + (q + _mask_query(query) if q else "")


_CONNINFO_PAIR = re.compile(r"(\b[\w.-]+)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)")


def mask_conninfo(text: str) -> str:
    """A libpq keyword/value string (`host=db password=x`) with credential-like values masked."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={MASK}" if is_credential_name(name) and match.group(2) else match.group(0)
    return _CONNINFO_PAIR.sub(one, text)


def mask_json_template(text: str) -> str:
    """A JSON template with the values of credential-like fields masked (at any depth)."""
    try:
        value = json.loads(text)
    except ValueError:
        return MASK

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (MASK if is_credential_name(str(k)) and v not in ("", None) else walk(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node
    return json.dumps(walk(value), ensure_ascii=False)


def mask_secret(value: str) -> str:
    """A whole-value secret: `(unset)` or `****` (the last two characters kept when it is long)."""
    if not value:
        return "(unset)"
    return MASK + ("" if len(value) < 12 else value[-2:])
