"""``labrig web``: the lab in a browser - live channels, runs, plots, reports, queue.

- :func:`create_app` / :class:`WebConfig` - the Starlette application and its settings.
- :class:`DataSource` - the seam between pages and data; :class:`LocalSource` serves one
  PC from MQTT, its runs directory and its scheduler daemon; a lab-database source plugs
  in through :func:`lab_source` (not available yet).
- :class:`UserStore` - users and roles (operator, viewer) with Argon2 password hashes.

See ``docs/web.md``.
"""

from .app import WebConfig, create_app
from .auth import ROLES, AuthConfigError, User, UserStore, set_user
from .source import DataSource, LocalSource, SourceUnavailable, lab_source

__all__ = [
    "ROLES",
    "AuthConfigError",
    "DataSource",
    "LocalSource",
    "SourceUnavailable",
    "User",
    "UserStore",
    "WebConfig",
    "create_app",
    "lab_source",
    "set_user",
]
