"""Secrets, API tokens and the lab's certificates.

- **Secrets** (the lab secret, private keys, tokens, database passwords) come from the
  environment or from files that only their owner can read (mode 0600 or stricter);
  :func:`read_secret` refuses anything else. They never appear in station files, logs or
  the database.
- **API tokens** carry a principal and a role: ``labrig1.<name>.<role>.<mac>`` where the
  MAC is HMAC-SHA256 of ``name.role`` under the lab secret. Every agent holds the lab
  secret, so it verifies tokens without asking the database (which may be down); a token
  is minted with ``labrig lab token NAME --role ROLE``. Roles: ``viewer`` (read),
  ``operator`` (read, command runs), ``agent`` (read, command instruments it has booked).
- **Certificates**: ``labrig lab init-certs`` makes a lab CA and, per agent, a key and a
  certificate (server and client use) signed by it, with the agent's host names and
  addresses. Agents speak TLS with each other and require each other's certificates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

__all__ = [
    "ROLES",
    "Principal",
    "SecretError",
    "issue_agent_cert",
    "make_ca",
    "mint_token",
    "read_secret",
    "role_allows",
    "verify_token",
    "write_secret",
]

ROLES = ("viewer", "operator", "agent")
_RANK = {"viewer": 0, "operator": 1, "agent": 2}
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PREFIX = "labrig1"


class SecretError(ValueError):
    """A secret is missing, malformed or readable by others; the message says which."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a name and its role."""

    name: str
    role: str


def role_allows(role: str, needed: str) -> bool:
    """``agent`` may do what an operator may, an operator what a viewer may."""
    return _RANK.get(role, -1) >= _RANK[needed]


def read_secret(*, env: str | None = None, path: str | Path | None = None, what: str) -> str:
    """The secret from the environment variable ``env`` or the file ``path``.

    A file must belong to the current user and be readable by nobody else (0600).
    """
    if env is not None:
        value = os.environ.get(env)
        if value:
            return value.strip()
    if path is None:
        hint = f"set ${env} or " if env else ""
        raise SecretError(f"{what}: not given ({hint}give a file with mode 0600)")
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise SecretError(f"{what}: cannot read {p}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretError(
            f"{what}: {p} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run `chmod 600 {p}`"
        )
    if st.st_uid != os.getuid():
        raise SecretError(f"{what}: {p} belongs to another user")
    value = p.read_text(encoding="utf-8").strip()
    if not value:
        raise SecretError(f"{what}: {p} is empty")
    return value


def write_secret(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` with mode 0600 from birth (no window for others)."""
    raw = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, raw)
    finally:
        os.close(fd)


def _mac(secret: str, name: str, role: str) -> str:
    digest = hmac.new(secret.encode(), f"{name}.{role}".encode(), hashlib.sha256).hexdigest()
    return digest[:48]


def mint_token(secret: str, name: str, role: str) -> str:
    """A token for ``name`` with ``role`` (see the module docstring)."""
    if not _NAME.match(name):
        raise SecretError(f"token name {name!r}: letters, digits, '-' and '_' only (1-64)")
    if role not in ROLES:
        raise SecretError(f"role {role!r}: one of {', '.join(ROLES)}")
    return f"{_PREFIX}.{name}.{role}.{_mac(secret, name, role)}"


def verify_token(secret: str, token: str | None) -> Principal | None:
    """The principal of a valid token, or None (never raises, constant-time compare)."""
    if not token or len(token) > 256:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _PREFIX:
        return None
    _, name, role, mac = parts
    if role not in ROLES or not _NAME.match(name):
        return None
    if not hmac.compare_digest(mac, _mac(secret, name, role)):
        return None
    return Principal(name, role)


# ---------------------------------------------------------------------- certificates
def _key() -> EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(directory: Path, lab: str, *, days: int = 3650) -> tuple[Path, Path]:
    """A lab CA in ``directory``: ``ca.crt`` (share it) and ``ca.key`` (0600, keep it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"labrig lab CA {lab}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives import serialization

    directory.mkdir(parents=True, exist_ok=True)
    crt = directory / "ca.crt"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_secret(directory / "ca.key", _pem_key(key))
    return crt, directory / "ca.key"


def issue_agent_cert(
    directory: Path, agent: str, hosts: list[str], *, days: int = 825
) -> tuple[Path, Path]:
    """``<agent>.crt`` and ``<agent>.key`` (0600) signed by the CA in ``directory``.

    ``hosts`` are the names and IP addresses the agent is reached at; the certificate
    serves for both TLS server and client authentication.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    issuer_keys = (
        ec.EllipticCurvePrivateKey,
        rsa.RSAPrivateKey,
        dsa.DSAPrivateKey,
        ed25519.Ed25519PrivateKey,
        ed448.Ed448PrivateKey,
    )
    if not _NAME.match(agent):
        raise SecretError(f"agent name {agent!r}: letters, digits, '-' and '_' only")
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key(
        read_secret(path=directory / "ca.key", what="lab CA key").encode(), password=None
    )
    if not isinstance(ca_key, issuer_keys):
        raise SecretError(
            f"{directory / 'ca.key'}: a {type(ca_key).__name__} cannot sign certificates "
            "(an EC, RSA, DSA, Ed25519 or Ed448 key can)"
        )
    alt: list[x509.GeneralName] = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    key = _key()
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    crt = directory / f"{agent}.crt"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_secret(directory / f"{agent}.key", _pem_key(key))
    return crt, directory / f"{agent}.key"


def new_lab_secret() -> str:
    return secrets.token_urlsafe(32)
