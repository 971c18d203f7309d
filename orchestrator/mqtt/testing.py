"""A private Mosquitto for tests, benchmarks and local trials: never used by a run.

:class:`LocalMosquitto` renders the shipped ``orchestrator/data/mosquitto.conf`` with its
own port, password file, ACL and persistence directory, so what the tests exercise is the
configuration operators install. It can be stopped and restarted on the same port.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from importlib import resources
from pathlib import Path
from types import TracebackType

__all__ = ["LocalMosquitto", "MosquittoNotFound", "free_port", "mosquitto_binary"]

# Keys of the shipped config that a private instance replaces.
_REPLACED = {
    "listener",
    "port",
    "password_file",
    "acl_file",
    "persistence",
    "persistence_location",
    "autosave_interval",
    "log_dest",
    "pid_file",
    "user",
    "cafile",
    "certfile",
    "keyfile",
    "tls_version",
}
DEFAULT_USERS = ("rig-a", "operator", "viewer")


class MosquittoNotFound(RuntimeError):
    """The mosquitto (or mosquitto_passwd) program is not installed."""


def mosquitto_binary() -> str | None:
    """Path of the mosquitto broker, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shipped_file(name: str) -> str:
    return resources.files("labrig.orchestrator").joinpath("data", name).read_text()


def render_config(
    port: int,
    password_file: Path,
    acl_file: Path,
    *,
    persistence: bool,
    data_dir: Path,
    base: str | None = None,
) -> str:
    """The shipped config with this instance's listener, files and persistence."""
    text = shipped_file("mosquitto.conf") if base is None else base
    kept = [
        line
        for line in text.splitlines()
        if not line.strip() or line.lstrip().startswith("#") or line.split()[0] not in _REPLACED
    ]
    kept += [
        f"listener {port} 127.0.0.1",
        f"password_file {password_file}",
        f"acl_file {acl_file}",
        f"persistence {'true' if persistence else 'false'}",
        f"persistence_location {data_dir}/",
        "autosave_interval 1",
        "log_dest stderr",
    ]
    if os.geteuid() == 0:
        # Started by root, mosquitto would switch to the "mosquitto" account, which
        # cannot read this private directory; a throw-away test broker may stay root.
        kept.append("user root")
    return "\n".join(kept) + "\n"


class LocalMosquitto:
    """A mosquitto process on a free loopback port, with accounts and the shipped ACL.

    ``passwords`` maps each account of :data:`DEFAULT_USERS` (or ``users``) to a random
    password; :meth:`url` gives a URL for one of them.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        persistence: bool = False,
        users: tuple[str, ...] = DEFAULT_USERS,
        acl: str | None = None,
        port: int | None = None,
    ) -> None:
        binary = mosquitto_binary()
        passwd = shutil.which("mosquitto_passwd")
        if binary is None or passwd is None:
            raise MosquittoNotFound("mosquitto / mosquitto_passwd are not installed")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.passwords = {u: secrets.token_urlsafe(12) for u in users}
        self.password_file = self.workdir / "passwd"
        self.acl_file = self.workdir / "acl"
        self.log_file = self.workdir / "mosquitto.log"
        data_dir = self.workdir / "data"
        data_dir.mkdir(exist_ok=True)
        self.password_file.write_text("")
        for user, password in self.passwords.items():
            subprocess.run(
                [passwd, "-b", str(self.password_file), user, password],
                check=True,
                capture_output=True,
                timeout=10,
            )
        self.acl_file.write_text(acl if acl is not None else shipped_file("mosquitto.acl.example"))
        self.config_file = self.workdir / "mosquitto.conf"
        self.config_file.write_text(
            render_config(
                self.port,
                self.password_file,
                self.acl_file,
                persistence=persistence,
                data_dir=data_dir,
            )
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, user: str | None = None) -> str:
        if user is None:
            return f"mqtt://127.0.0.1:{self.port}"
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        log = self.log_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self._proc.returncode}: "
                    + self.log_file.read_text(errors="replace")[-2000:]
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop (SIGTERM: saves persistence) or kill (SIGKILL) the broker and wait."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> LocalMosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
