"""Users and roles of the web app: file rules, hashing, reload."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labrig.orchestrator.web.auth import AuthConfigError, UserStore, hash_password, set_user


def test_set_user_writes_a_0600_file_with_argon2_hashes(tmp_path: Path) -> None:
    path = tmp_path / "users"
    set_user(path, "ana", "operator", "correct horse")
    set_user(path, "ben", "viewer", "battery staple")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "correct horse" not in text and text.count("$argon2id$") == 2
    store = UserStore.from_file(path)
    ana = store.verify("ana", "correct horse")
    assert ana is not None and ana.operator
    assert store.verify("ana", "wrong") is None
    assert store.verify("nobody", "correct horse") is None
    ben = store.verify("ben", "battery staple")
    assert ben is not None and ben.role == "viewer" and not ben.operator


def test_a_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "users"
    set_user(path, "ana", "operator", "correct horse")
    os.chmod(path, 0o644)
    with pytest.raises(AuthConfigError, match="chmod 600"):
        UserStore.from_file(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ana operator", "expected 'name role hash'"),
        ("ana admin $argon2id$x", "role 'admin'"),
        ("ana operator plaintext", "not an Argon2 hash"),
        ("a/b viewer $argon2id$x", "not valid"),
    ],
)
def test_bad_lines_are_named_by_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "users"
    path.write_text(f"# users\n{line}\n")
    os.chmod(path, 0o600)
    with pytest.raises(AuthConfigError, match=message) as info:
        UserStore.from_file(path)
    assert f"{path}:2:" in str(info.value)


def test_users_from_the_environment() -> None:
    h = hash_password("pw-for-env-1")
    store = UserStore.from_env({"LABRIG_WEB_USERS": f"ana operator {h};ben viewer {h}"})
    assert store is not None and len(store) == 2
    assert UserStore.from_env({}) is None
    with pytest.raises(AuthConfigError, match="at least 8"):
        hash_password("short")


def test_removing_a_user_takes_effect_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "users"
    set_user(path, "ana", "operator", "correct horse")
    set_user(path, "ben", "viewer", "battery staple")
    store = UserStore.from_file(path)
    assert store.user("ben") is not None
    set_user(path, "ben", "viewer", None)
    assert store.user("ben") is None and store.user("ana") is not None
    os.chmod(path, 0o640)  # a file made readable by others signs everybody out
    os.utime(path, ns=(1, 1))
    assert store.user("ana") is None
