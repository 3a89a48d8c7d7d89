"""Typed settings: every ``tenantapp.*`` option, its default, and its check.

The ini file is the one source of configuration. A value written as
``env:NAME`` is read from the environment variable ``NAME`` (production.ini
does this for secrets and addresses). Anything missing or malformed stops the
start with one sentence that names the setting.
"""

import os
import re
from dataclasses import dataclass

from pyramid.settings import asbool


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it."""


_SECRET_MIN_LENGTH = 32


@dataclass(frozen=True)
class Settings:
    catalog_url: str
    tenant_url_template: str
    secret: str
    cookie_name: str = "session"
    cookie_secure: bool = False
    session_idle_timeout: int = 1800
    session_max_age: int = 43200
    # "last used" is written at most this often per session, not per request.
    session_touch_interval: int = 60
    login_max_attempts: int = 5
    login_window: int = 900
    # The connection budget of one process, all databases together.
    max_connections: int = 50
    catalog_pool_size: int = 10
    tenant_pool_size: int = 5
    max_tenant_engines: int = 32
    # A request that waits for a pooled connection, then connects to a server
    # that never answers, answers 503 after pool_timeout + connect_timeout:
    # within API.md's 5 seconds with room to spare. (libpq's connect timeout
    # is whole seconds, at least 2.)
    pool_timeout: float = 1.0
    # Ping a pooled connection before use when it sat idle this long (0: always).
    pool_ping_after: int = 10
    connect_timeout: int = 3
    statement_timeout_ms: int = 30000
    retry_after: int = 5
    # argon2 parameters (RFC 9106 low-memory profile by default).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # Moves between tenants (tenantapp.db.recovery): a prepared transaction
    # without a decision is left to its coordinator this many seconds; each
    # app process resolves leftovers every move_resolver_interval seconds (0: never).
    move_grace_period: int = 30
    move_resolver_interval: int = 60


_INT_SETTINGS = {
    "session_idle_timeout": 1,
    "session_max_age": 1,
    "session_touch_interval": 0,
    "login_max_attempts": 1,
    "login_window": 1,
    "max_connections": 2,
    "pool_ping_after": 0,
    "catalog_pool_size": 1,
    "tenant_pool_size": 1,
    "max_tenant_engines": 1,
    "connect_timeout": 1,
    "statement_timeout_ms": 0,
    "retry_after": 1,
    "argon2_time_cost": 1,
    "argon2_memory_kib": 8,
    "argon2_parallelism": 1,
    "move_grace_period": 0,
    "move_resolver_interval": 0,
}


def _resolve(name, raw):
    """Return the value of a setting, reading ``env:NAME`` from the environment."""
    if raw is None:
        return None
    raw = str(raw).strip()
    if raw.startswith("env:"):
        var = raw[4:].strip()
        value = os.environ.get(var, "").strip()
        if not value:
            raise SettingsError(f"tenantapp.{name}: the environment variable {var} is not set")
        return value
    return raw


def parse_settings(raw_settings):
    """Build :class:`Settings` from the ini file's app section (a dict)."""

    def get(name, default=None):
        return _resolve(name, raw_settings.get(f"tenantapp.{name}", default))

    values = {}
    for name in ("catalog_url", "tenant_url_template", "secret"):
        value = get(name)
        if not value:
            raise SettingsError(f"tenantapp.{name} is required")
        values[name] = value
    if "{name}" not in values["tenant_url_template"]:
        raise SettingsError("tenantapp.tenant_url_template must contain {name}")
    if len(values["secret"]) < _SECRET_MIN_LENGTH:
        raise SettingsError(
            f"tenantapp.secret must be at least {_SECRET_MIN_LENGTH} characters long"
        )

    for name, minimum in _INT_SETTINGS.items():
        value = get(name)
        if value is None:
            continue
        if not re.fullmatch(r"\d+", value) or int(value) < minimum:
            raise SettingsError(
                f"tenantapp.{name} must be an integer of at least {minimum}, not {value!r}"
            )
        values[name] = int(value)

    pool_timeout = get("pool_timeout")
    if pool_timeout is not None:
        try:
            values["pool_timeout"] = float(pool_timeout)
        except ValueError:
            raise SettingsError(
                f"tenantapp.pool_timeout must be a number of seconds, not {pool_timeout!r}"
            ) from None

    cookie_name = get("cookie_name")
    if cookie_name is not None:
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", cookie_name):
            raise SettingsError("tenantapp.cookie_name must be a plain token")
        values["cookie_name"] = cookie_name
    cookie_secure = get("cookie_secure")
    if cookie_secure is not None:
        values["cookie_secure"] = asbool(cookie_secure)

    settings = Settings(**values)
    if settings.catalog_pool_size >= settings.max_connections:
        raise SettingsError(
            "tenantapp.catalog_pool_size must be smaller than tenantapp.max_connections"
        )
    return settings
