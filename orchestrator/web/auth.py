"""Who may use the web app: users and roles from a file (mode 0600) or the environment,
passwords hashed with Argon2id (argon2-cffi).

Roles are those of the MQTT ACL (``docs/mqtt.md``): an ``operator`` sees everything and
may pause, continue, abort and submit runs; a ``viewer`` sees everything and commands
nothing.

The users file has one user a line, ``name role hash`` (``#`` starts a comment)::

    ana   operator  $argon2id$v=19$m=65536,t=3,p=4$...
    ben   viewer    $argon2id$v=19$m=65536,t=3,p=4$...

``labrig web-user FILE NAME --role operator`` adds or changes one (it asks for the
password). ``LABRIG_WEB_USERS`` may hold the same lines instead, separated by newlines or
``;``. The file is re-read when it changes, so removing a user signs them out.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "ROLES",
    "AuthConfigError",
    "User",
    "UserStore",
    "hash_password",
    "set_user",
]

ROLES = ("viewer", "operator")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_hasher = PasswordHasher()
# A hash to verify against for unknown names, so a wrong name costs what a wrong
# password costs (no user enumeration by timing).
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


class AuthConfigError(ValueError):
    """The users file or variable is not usable; the message names where and why."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    #: why the role is lower than the users file says (the lab database's role)
    why: str | None = field(default=None, compare=False)

    @property
    def operator(self) -> bool:
        return self.role == "operator"


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AuthConfigError("a password needs at least 8 characters")
    return _hasher.hash(password)


def _parse(text: str, where: str, sep: str = "\n") -> dict[str, tuple[str, str]]:
    users: dict[str, tuple[str, str]] = {}
    for n, raw in enumerate(text.split(sep), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise AuthConfigError(
                f"{where}:{n}: expected 'name role hash', got {len(parts)} field(s)"
            )
        name, role, hashed = parts
        if not _NAME.match(name):
            raise AuthConfigError(f"{where}:{n}: user name {name!r} is not valid")
        if role not in ROLES:
            raise AuthConfigError(
                f"{where}:{n}: role {role!r} of {name!r} is not one of {', '.join(ROLES)}"
            )
        if not hashed.startswith("$argon2"):
            raise AuthConfigError(
                f"{where}:{n}: the password of {name!r} is not an Argon2 hash "
                "(make it with `labrig web-user`)"
            )
        if name in users:
            raise AuthConfigError(f"{where}:{n}: user {name!r} appears twice")
        users[name] = (role, hashed)
    return users


def _check_mode(path: Path) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise AuthConfigError(f"{path}: cannot read the users file ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise AuthConfigError(f"{path}: the users file is not a regular file")
    if st.st_mode & 0o077:
        raise AuthConfigError(
            f"{path}: the users file is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {path}`"
        )


class UserStore:
    """Users and their hashed passwords; :meth:`verify` checks a sign-in."""

    def __init__(self, users: Mapping[str, tuple[str, str]], *, path: Path | None = None) -> None:
        self._users = dict(users)
        self.path = path
        self._stamp = self._file_stamp()
        self._lock = threading.Lock()
        if not self._users:
            raise AuthConfigError(f"{path or 'LABRIG_WEB_USERS'}: no users")

    def _file_stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    @classmethod
    def from_file(cls, path: Path) -> UserStore:
        _check_mode(path)
        return cls(_parse(path.read_text(encoding="utf-8"), str(path)), path=path)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> UserStore | None:
        """Users from ``LABRIG_WEB_USERS`` (lines or ';'-separated), or None if unset."""
        env = os.environ if environ is None else environ
        text = env.get("LABRIG_WEB_USERS")
        if not text:
            return None
        return cls(_parse(text.replace(";", "\n"), "LABRIG_WEB_USERS"))

    def _reload(self) -> None:
        """Re-read the file when it changed; a broken file keeps nobody signed in."""
        if self.path is None:
            return
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        with self._lock:
            self._stamp = stamp
            try:
                _check_mode(self.path)
                self._users = _parse(self.path.read_text(encoding="utf-8"), str(self.path))
            except (AuthConfigError, OSError):
                self._users = {}

    def user(self, name: str) -> User | None:
        """The user ``name`` as the file says now (None when removed)."""
        self._reload()
        entry = self._users.get(name)
        return None if entry is None else User(name, entry[0])

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None (same cost either way)."""
        self._reload()
        entry = self._users.get(name)
        hashed = entry[1] if entry is not None else _DUMMY
        try:
            _hasher.verify(hashed, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return User(name, entry[0]) if entry is not None else None

    def __len__(self) -> int:
        return len(self._users)


def set_user(path: Path, name: str, role: str, password: str | None) -> None:
    """Add, change (``password`` given) or remove (``password`` None) a user in ``path``.

    The file is created with mode 0600 and replaced atomically.
    """
    if not _NAME.match(name):
        raise AuthConfigError(f"user name {name!r} is not valid (letters, digits, . _ @ -)")
    if role not in ROLES:
        raise AuthConfigError(f"role {role!r} is not one of {', '.join(ROLES)}")
    users: dict[str, tuple[str, str]] = {}
    if path.exists():
        _check_mode(path)
        users = _parse(path.read_text(encoding="utf-8"), str(path))
    if password is None:
        if users.pop(name, None) is None:
            raise AuthConfigError(f"{path}: no user {name!r}")
    else:
        users[name] = (role, hash_password(password))
    lines = ["# labrig web users: name role argon2-hash (see docs/web.md)"]
    lines += [f"{n} {r} {h}" for n, (r, h) in sorted(users.items())]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
