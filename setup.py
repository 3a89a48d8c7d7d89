from setuptools import find_namespace_packages, setup

requires = [
    "SQLAlchemy>=2.0,<2.2",
    "alembic>=1.13",
    "argon2-cffi>=23.1",
    "orjson>=3.9",
    "plaster_pastedeploy",
    "prometheus_client>=0.20",  # GET /metrics
    "psycopg2-binary>=2.9",
    "pydantic>=2.6,<3",
    "pyramid>=2.0,<3",
    "pyramid_jinja2>=2.10",
    "pyramid_retry>=2.1",
    "pyramid_tm>=2.5",
    "swagger-ui-py>=25.7",  # Swagger UI 5 assets for /api/docs (OpenAPI 3.1)
    "tqdm>=4.66",
    "transaction>=4.0",
    "waitress>=3.0",
    "zope.interface",
    "zope.sqlalchemy>=3.1",
]

tests_require = [
    "WebTest>=3.0",
    "openapi-spec-validator>=0.7",
    "pytest>=8",
    "playwright>=1.40",
    "ruff",
    "schemathesis>=4.32",
    # imported by tests/test_openapi.py (also pulled in by the two above)
    "hypothesis",
    "jsonschema",
    "referencing",
]

setup(
    name="tenantapp",
    version="0.1.0",
    description="A multi-tenant Pyramid + SQLAlchemy application: one database per tenant.",
    packages=find_namespace_packages(include=["tenantapp", "tenantapp.*"]),
    include_package_data=True,
    package_data={"tenantapp": ["migrations/*/*.py", "migrations/*/versions/*.py",
                                "templates/*", "static/*"]},
    zip_safe=False,
    python_requires=">=3.11",
    install_requires=requires,
    extras_require={"testing": tests_require},
    entry_points={
        "paste.app_factory": ["main = tenantapp:main"],
        "paste.server_runner": ["waitress = tenantapp.server:serve"],
        "console_scripts": ["tenantapp-admin = tenantapp.cli:main"],
    },
)
