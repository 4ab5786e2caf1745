"""Join-link tokens: the fast check of our own tokens accepts exactly what PyJWT accepts, and everything else
gets PyJWT's verdict (a bad signature, another algorithm, another audience, extra claims, expiry)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from web.auth import LINK_AUDIENCE, LinkError, LinkSigner

KEY = "current-secret-" + "k" * 40
OLD = "previous-secret-" + "o" * 40
JTI = uuid.UUID("0b6f6a4e-3c1d-4c55-9a43-3f1f0e2a7c11")


def _later(hours: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _code(signer: LinkSigner, token: str, **kwargs: bool) -> str:
    with pytest.raises(LinkError) as caught:
        signer.verify(token, **kwargs)
    return caught.value.code


def test_our_token_is_checked_without_pyjwt_and_gives_its_link_id() -> None:
    signer = LinkSigner(KEY)
    token = signer.sign(JTI, _later())
    assert signer._verify_own(token, allow_expired=False) == JTI
    assert signer.verify(token) == JTI


def test_a_token_signed_with_the_previous_key_still_works_after_rotation() -> None:
    token = LinkSigner(OLD).sign(JTI, _later())
    rotated = LinkSigner(KEY, (OLD,))
    assert rotated._verify_own(token, allow_expired=False) == JTI
    assert rotated.verify(token) == JTI
    assert _code(LinkSigner(KEY), token) == "link_invalid"  # once the old key is dropped


def test_expired_is_expired_unless_allowed() -> None:
    signer = LinkSigner(KEY)
    token = signer.sign(JTI, datetime.now(UTC) - timedelta(seconds=5))
    assert _code(signer, token) == "link_expired"
    assert signer.verify(token, allow_expired=True) == JTI


@pytest.mark.parametrize("tamper", ["signature", "claims", "header"])
def test_a_tampered_token_is_invalid(tamper: str) -> None:
    signer = LinkSigner(KEY)
    head, claims, signature = signer.sign(JTI, _later()).split(".")
    if tamper == "signature":
        signature = signature[:-4] + ("AAAA" if not signature.endswith("AAAA") else "BBBB")
    elif tamper == "claims":
        claims = _b64({"jti": str(uuid.uuid4()), "aud": LINK_AUDIENCE, "exp": int(_later().timestamp())})
    else:
        head = _b64({"alg": "HS256", "kid": "someone-else", "typ": "JWT"})
    token = f"{head}.{claims}.{signature}"
    assert signer._verify_own(token, allow_expired=False) is None
    assert _code(signer, token) == "link_invalid"


def test_an_unsigned_token_is_invalid() -> None:
    signer = LinkSigner(KEY)
    claims = {"jti": str(JTI), "aud": LINK_AUDIENCE, "exp": int(_later().timestamp())}
    token = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': LinkSigner.key_id(KEY)})}.{_b64(claims)}."
    assert signer._verify_own(token, allow_expired=False) is None
    assert _code(signer, token) == "link_invalid"


def test_other_shapes_signed_with_our_key_get_pyjwts_verdict() -> None:
    signer = LinkSigner(KEY)
    headers = {"kid": LinkSigner.key_id(KEY)}
    exp = int(_later().timestamp())
    other_audience = jwt.encode({"jti": str(JTI), "aud": "elsewhere", "exp": exp}, KEY, algorithm="HS256",
                                headers=headers)
    assert signer._verify_own(other_audience, allow_expired=False) is None
    assert _code(signer, other_audience) == "link_invalid"
    extra = jwt.encode({"jti": str(JTI), "aud": LINK_AUDIENCE, "exp": exp, "sub": "x"}, KEY, algorithm="HS256",
                       headers=headers)
    assert signer._verify_own(extra, allow_expired=False) is None
    assert signer.verify(extra) == JTI  # PyJWT accepts it, as before
    not_yet = jwt.encode({"jti": str(JTI), "aud": LINK_AUDIENCE, "exp": exp,
                          "nbf": int(_later(2).timestamp())}, KEY, algorithm="HS256", headers=headers)
    assert _code(signer, not_yet) == "link_invalid"  # PyJWT checks nbf; the fast path never sees it


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c", "a.b.c.d", "ờ.ờ.ờ", "e30.e30.", "!!!.###.$$$"])
def test_garbage_is_invalid(token: str) -> None:
    assert _code(LinkSigner(KEY), token) == "link_invalid"
