"""``labrig web``: the lab in a browser - live channels, runs, plots, reports, queue.

- :func:`create_app` / :class:`WebConfig` - the Starlette application and its settings.
- :class:`DataSource` - the seam between pages and data; :class:`LocalSource` serves one
  PC from MQTT (or its daemon and run directories), its runs directory and its scheduler
  daemon; :class:`LabSource` a lab of many PCs from the lab database (``--lab URL``).
- :class:`UserStore` - users and roles (operator, viewer) with Argon2 password hashes.

See ``docs/web.md``.
"""

from .app import WebConfig, create_app
from .auth import ROLES, AuthConfigError, User, UserStore, set_user
from .labsource import LabSource
from .local import LocalSource
from .source import DataSource, SourceRefused, SourceUnavailable

__all__ = [
    "ROLES",
    "AuthConfigError",
    "DataSource",
    "LabSource",
    "LocalSource",
    "SourceRefused",
    "SourceUnavailable",
    "User",
    "UserStore",
    "WebConfig",
    "create_app",
    "set_user",
]
