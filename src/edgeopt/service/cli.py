"""The service's part of the ``edgeopt`` command: ``edgeopt db upgrade`` and ``edgeopt serve``.

``src/edgeopt/cli.py`` mounts ``db_app`` as the ``db`` group and calls ``serve`` from its ``serve`` command.
"""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from edgeopt.service.db.migrate import upgrade as upgrade_database
from edgeopt.settings import get_settings

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@db_app.callback()
def db_group() -> None:
    """Database maintenance (a group even with one command, so it is always ``db upgrade``)."""


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@db_app.command("upgrade")
def upgrade() -> None:
    """Apply every pending migration to the configured database (EDGEOPT_DATABASE_URL, SQLite by default)."""
    url = get_settings().resolved_database_url
    upgrade_database(url)
    typer.echo(f"Database {_safe_url(url)} is at the newest schema.")


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Migrate, then serve the API and the web app. Imports uvicorn and the app only when actually serving."""
    import uvicorn

    from edgeopt.service.app import create_app

    settings = get_settings()
    upgrade_database(settings.resolved_database_url)
    typer.echo(
        f"EdgeOpt on http://{host}:{port} (API docs at /docs), database {_safe_url(settings.resolved_database_url)}"
    )
    # The app logs one JSON line per request itself; uvicorn's access log would repeat each one.
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False)
