"""Session tokens, their signed cookie form, and CSRF tokens derived from them.

The cookie holds ``token.signature``: a forged or tampered cookie is refused
without touching the database. The catalog stores only SHA-256(token), and the
CSRF token is an HMAC of that hash, so it needs no storage and dies with the
session.
"""

import base64
import hashlib
import hmac
import secrets


def _b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def new_token():
    """A fresh random session token (256 bits)."""
    return secrets.token_urlsafe(32)


def token_hash(token):
    """What the catalog stores for a token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _mac(secret, purpose, value):
    return _b64(
        hmac.new(
            secret.encode("utf-8"), f"{purpose}:{value}".encode("ascii"), hashlib.sha256
        ).digest()
    )


def sign_token(secret, token):
    """The cookie value for ``token``."""
    return f"{token}.{_mac(secret, 'cookie', token)}"


def unsign_token(secret, cookie_value):
    """The token inside a cookie value, or None when it is malformed or forged."""
    # Non-ASCII anywhere is no cookie of ours (and hmac.compare_digest
    # refuses non-ASCII strings with a TypeError).
    if not cookie_value or len(cookie_value) > 200 or not cookie_value.isascii():
        return None
    token, sep, signature = cookie_value.rpartition(".")
    if not sep:
        return None
    if not hmac.compare_digest(_mac(secret, "cookie", token), signature):
        return None
    return token


def csrf_token(secret, hashed_token):
    """The CSRF token of the session whose token hashes to ``hashed_token``."""
    return _mac(secret, "csrf", hashed_token)


def csrf_matches(secret, hashed_token, presented):
    """Constant-time check of an ``X-CSRF-Token`` header."""
    if not presented or not presented.isascii():
        return False
    return hmac.compare_digest(csrf_token(secret, hashed_token), presented)


def session_public_id(secret, hashed_token):
    """The id under which a login session is shown to its user (``GET
    /api/me/sessions``): an HMAC of the token hash, so it is stable, needs no
    storage, and neither is nor reveals the token or its hash (it opens
    nothing: a cookie is the signed token, a CSRF token another HMAC)."""
    return _mac(secret, "session-id", hashed_token)
