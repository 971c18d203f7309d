"""Agent certificates are signed by the lab CA's key; a key in ``ca.key`` that cannot
sign is refused with a clear error naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, x25519

from labrig.orchestrator.lab.security import SecretError, issue_agent_cert, make_ca


def test_an_agent_certificate_is_signed_by_the_lab_ca(tmp_path: Path) -> None:
    make_ca(tmp_path, "unit")
    issue_agent_cert(tmp_path, "agent1", ["127.0.0.1"])
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "agent1.crt").read_bytes())
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)


def _replace_ca_key(directory: Path, key: rsa.RSAPrivateKey | x25519.X25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (directory / "ca.key").write_bytes(pem)


def test_a_ca_key_of_another_kind_that_signs_is_used(tmp_path: Path) -> None:
    make_ca(tmp_path, "unit")
    _replace_ca_key(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    issue_agent_cert(tmp_path, "agent1", ["127.0.0.1"])
    assert (tmp_path / "agent1.crt").exists()


def test_a_ca_key_that_cannot_sign_is_refused(tmp_path: Path) -> None:
    make_ca(tmp_path, "unit")
    _replace_ca_key(tmp_path, x25519.X25519PrivateKey.generate())
    with pytest.raises(SecretError, match=r"ca\.key: a .*X25519.* cannot sign certificates"):
        issue_agent_cert(tmp_path, "agent1", ["127.0.0.1"])
    assert not (tmp_path / "agent1.crt").exists()
