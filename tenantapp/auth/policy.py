"""The security policy: identity is the login session, permission is the role
in the chosen tenant (re-read from the catalog on every request)."""

from pyramid.security import Allowed, Denied

# Which roles grant each permission the views ask for.
PERMISSION_ROLES = {
    "read": frozenset({"viewer", "editor", "admin"}),
    "write": frozenset({"editor", "admin"}),
    "admin": frozenset({"admin"}),
}


class TenantRoleSecurityPolicy:
    """Pyramid security policy over :attr:`TenantRequest.login`."""

    def identity(self, request):
        return request.login

    def authenticated_userid(self, request):
        login = request.login
        return login.user_id if login is not None else None

    def permits(self, request, context, permission):
        login = request.login
        if login is None:
            return Denied("not logged in")
        tenant = login.tenant
        if tenant is None:
            return Denied("no tenant chosen, or the membership was revoked")
        if tenant.role in PERMISSION_ROLES.get(permission, ()):
            return Allowed(f"role {tenant.role} grants {permission}")
        return Denied(f"role {tenant.role} does not grant {permission}")

    def remember(self, request, userid, **kw):
        return []

    def forget(self, request, **kw):
        return []


def includeme(config):
    config.set_security_policy(TenantRoleSecurityPolicy())
