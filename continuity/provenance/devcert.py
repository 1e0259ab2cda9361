"""A throwaway signing identity (a CA and an end-entity certificate) for tests and trials.

Files signed with it validate (the signature and hashes hold) but are trusted by no one: a studio
signs with its own certificate, issued by a CA its audience trusts. The end-entity certificate has
what the C2PA SDK checks: not a CA, key usage digitalSignature, extended key usage emailProtection
and documentSigning, an authority key identifier, and a validity window around now.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

__all__ = ["write_test_identity"]


def write_test_identity(folder: str | os.PathLike[str], days: int = 30) -> tuple[Path, Path]:
    """Write ``chain.pem`` (end-entity then CA) and ``signer.key`` (PKCS#8, EC P-256) into ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "continuity test studio"),
            ]
        )

    def usage(*, sign_certs: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=sign_certs,
            crl_sign=sign_certs,
            encipher_only=False,
            decipher_only=False,
        )

    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    end = start + dt.timedelta(days=days + 1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("continuity test CA"))
        .issuer_name(name("continuity test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign_certs=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(name("continuity test signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign_certs=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    chain, private = out / "chain.pem", out / "signer.key"
    pem = serialization.Encoding.PEM
    chain.write_bytes(signer.public_bytes(pem) + ca.public_bytes(pem))
    private.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(private, 0o600)
    return chain, private
