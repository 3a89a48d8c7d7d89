"""Password hashing with argon2 (argon2-cffi).

The parameters are settings; the defaults are RFC 9106's low-memory profile
(argon2-cffi's own defaults). One :class:`Passwords` lives on the registry
(``registry.passwords``), used by the login view and the admin commands alike.
"""

from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    """Hashes and verifies passwords with one set of argon2 parameters."""

    def __init__(self, time_cost=3, memory_kib=65536, parallelism=4):
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )

    @cached_property
    def dummy_hash(self):
        """Verified against when the username is unknown, so that an unknown
        user and a wrong password cost the same time (no enumeration by timing).

        Made on first use, not at start-up: one argon2 hash (~150 ms with the
        default parameters) is a tenth of every ``tenantapp-admin`` command,
        which never verifies a password. The server makes it before it takes
        requests (``tenantapp.server``), so no login pays for it.
        """
        return self._hasher.hash("tenantapp: no such user")

    def prepare(self):
        """Make :attr:`dummy_hash` now (a server, before it takes requests)."""
        return self.dummy_hash

    def hash(self, password):
        """The argon2 hash of ``password``."""
        return self._hasher.hash(password)

    def verify(self, password_hash, password):
        """True when ``password`` matches; pass ``None`` as hash for an unknown user."""
        try:
            matched = self._hasher.verify(password_hash or self.dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return matched and password_hash is not None

    def needs_rehash(self, password_hash):
        """True when the hash was made with other parameters than today's."""
        return self._hasher.check_needs_rehash(password_hash)


def passwords_for(settings):
    """The hasher with the parameters of ``settings`` (TenantappSettings)."""
    return Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def includeme(config):
    config.registry.passwords = passwords_for(config.registry.tenantapp_settings)
