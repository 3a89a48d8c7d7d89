"""Business logic shared by the JSON views, the pages and the CLI.

Plain functions that take a Session; they raise :mod:`tenantapp.errors` and
never see a request.
"""
