"""The PasteDeploy server runner: waitress, on ``http_port`` (default 6543).

``pserve production.ini http_port=8080`` passes the port in ``global_conf``;
the default lives here, not in the ini file's [DEFAULT], which would win over
the command line.
"""

import waitress

DEFAULT_PORT = "6543"


def serve(app, global_conf, **options):
    options.setdefault("port", global_conf.get("http_port") or DEFAULT_PORT)
    waitress.serve(app, **options)
    return 0
