"""Authentication and authorization: passwords, login sessions, throttling, policy."""
