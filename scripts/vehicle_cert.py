"""Issue a vehicle's MQTT client certificate from the edgemon CA: its CN is the VIN, which the
broker's vehicle listener takes as the username (``use_identity_as_username``).

Two ways, the second keeps the private key on the gateway:

    # on the CA machine: a key and a certificate, copied to the gateway afterwards
    python -m scripts.vehicle_cert --ca ca.pem --ca-key ca.key --vin VF3ABCDEF12345678 -o out/
    # on the gateway: a key and a request; only the request travels to the CA machine
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\
        -keyout vehicle.key -out vehicle.csr -subj /CN=VF3ABCDEF12345678
    python -m scripts.vehicle_cert --ca ca.pem --ca-key ca.key --vin VF3ABCDEF12345678 \\
        --csr vehicle.csr -o out/

Writes ``out/<VIN>.pem`` (certificate) and, without ``--csr``, ``out/<VIN>.key`` (mode 0600).
The certificate is for client authentication only (extended key usage clientAuth), an EC P-256
key, valid ``--days`` days (default 825). Uses the ``cryptography`` package (a dependency of the
dev extra through trustme; ``pip install cryptography`` on a CA machine without it).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scripts.broker_config import VIN

# Test benches name vehicles with short ids; --test-id accepts them (one MQTT topic level).
_TEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_DAYS = 3650


class CertificateError(ValueError):
    """The certificate cannot be issued; the message says why."""


@dataclass(frozen=True)
class Issued:
    certificate: bytes  # PEM
    private_key: bytes | None  # PEM, None when the request came with its own key


def check_vin(vin: str, *, test_id: bool = False) -> None:
    if VIN.match(vin) or (test_id and _TEST_ID.match(vin)):
        return
    raise CertificateError(
        f"{vin!r} is not a VIN (17 characters, digits and capitals without I, O, Q)"
        + ("" if test_id else "; --test-id accepts a test bench id")
    )


CaPair = tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]


def load_ca(cert_pem: bytes, key_pem: bytes) -> CaPair:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"cannot read the CA certificate or key: {exc}") from exc
    if cert.public_key() != key.public_key():
        raise CertificateError("the CA key does not belong to the CA certificate")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = x509.BasicConstraints(ca=False, path_length=None)
    if not constraints.ca:
        raise CertificateError("the CA certificate is not a CA (basicConstraints CA:FALSE)")
    return cert, key  # type: ignore[return-value]


def issue(
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    vin: str,
    *,
    now: datetime,
    days: int = 825,
    csr_pem: bytes | None = None,
    test_id: bool = False,
) -> Issued:
    """A client certificate for ``vin``, signed by the CA; ``now`` is the issuing time."""
    check_vin(vin, test_id=test_id)
    if not 1 <= days <= MAX_DAYS:
        raise CertificateError(f"--days must be between 1 and {MAX_DAYS}")
    private_key: ec.EllipticCurvePrivateKey | None = None
    if csr_pem is None:
        private_key = ec.generate_private_key(ec.SECP256R1())
        public_key = private_key.public_key()
    else:
        public_key = _requested_key(csr_pem, vin)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, vin)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))  # a gateway clock slightly behind
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    key_pem = None
    if private_key is not None:
        key_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _requested_key(csr_pem: bytes, vin: str) -> ec.EllipticCurvePublicKey:
    """The key of a signing request, which must be self-signed, EC and name the same VIN."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        if not csr.is_signature_valid:
            raise CertificateError("the request's signature is not valid")
    except (ValueError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"cannot read the certificate request: {exc}") from exc
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [vin]:
        raise CertificateError(f"the request names CN {names!r}, not the VIN {vin!r}")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size < 256:
        raise CertificateError("the request's key must be an EC key of 256 bits or more")
    return key


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # an existing file keeps its old mode otherwise
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.vehicle_cert", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--ca", type=Path, required=True, help="the CA certificate (PEM)")
    parser.add_argument("--ca-key", type=Path, required=True, help="the CA private key (PEM)")
    parser.add_argument("--vin", required=True)
    parser.add_argument("--csr", type=Path, help="sign this request instead of making a key")
    parser.add_argument("--days", type=int, default=825)
    parser.add_argument("--test-id", action="store_true", help="accept a test bench id as VIN")
    parser.add_argument("-o", "--out-dir", type=Path, default=Path())
    args = parser.parse_args(argv)
    try:
        ca_cert, ca_key = load_ca(args.ca.read_bytes(), args.ca_key.read_bytes())
        csr = args.csr.read_bytes() if args.csr else None
        issued = issue(ca_cert, ca_key, args.vin, now=datetime.now(UTC), days=args.days,
                       csr_pem=csr, test_id=args.test_id)  # fmt: skip
    except (OSError, CertificateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    _write(args.out_dir / f"{args.vin}.pem", issued.certificate, 0o644)
    if issued.private_key is not None:
        _write(args.out_dir / f"{args.vin}.key", issued.private_key, 0o600)
    print(f"issued {args.out_dir / (args.vin + '.pem')} (CN={args.vin}, {args.days} days)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
