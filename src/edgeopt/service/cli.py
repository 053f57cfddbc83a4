"""The service's part of the ``edgeopt`` command: ``edgeopt db upgrade``, ``edgeopt serve`` and ``edgeopt worker``.

``src/edgeopt/cli.py`` mounts ``db_app`` as the ``db`` group and calls ``serve`` and ``worker`` from its commands
of those names.
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


def worker(concurrency: int = 1, hostname: str | None = None, loglevel: str = "INFO") -> None:
    """Migrate, then run a Celery worker on EDGEOPT_BROKER_URL (its tasks: ``edgeopt.service.worker``)."""
    import os

    from edgeopt.errors import InvalidInput

    settings = get_settings()
    if not settings.broker_url:
        raise InvalidInput(
            "EDGEOPT_BROKER_URL is not set; set it to the broker the API enqueues on "
            "(redis://host:6379/0 or amqp://user:password@host:5672//) and start the worker again."
        )
    upgrade_database(settings.resolved_database_url)
    from edgeopt.service.worker import app as celery_app

    typer.echo(
        f"EdgeOpt worker on {_safe_url(settings.broker_url)}, database {_safe_url(settings.resolved_database_url)}"
    )
    name = hostname or f"edgeopt@%h-{os.getpid()}"
    celery_app.worker_main(
        ["worker", f"--concurrency={concurrency}", f"--hostname={name}", f"--loglevel={loglevel}", "--pool=prefork"]
    )
