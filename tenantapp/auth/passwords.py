"""Password hashing with argon2 (argon2-cffi's RFC 9106 defaults)."""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that an unknown user and a
# wrong password cost the same time (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("tenantapp: no such user")


def hash_password(password):
    """Return the argon2 hash of ``password``."""
    return _hasher.hash(password)


def verify_password(password_hash, password):
    """True when ``password`` matches; pass ``None`` as hash for an unknown user."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and (
            password_hash is not None
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash):
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(password_hash)
