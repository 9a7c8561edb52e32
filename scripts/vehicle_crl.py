"""The certificate revocation list of the vehicle listener (``crlfile`` in the shipped
mosquitto.conf): revoke a stolen or scrapped gateway's certificate.

    # once, at install: an empty list
    python -m scripts.vehicle_crl --ca ca.pem --ca-key ca.key -o crl.pem
    # revoke: the list so far plus these certificates
    python -m scripts.vehicle_crl --ca ca.pem --ca-key ca.key --crl crl.pem \\
        --revoke out/VF3ABCDEF12345678.pem -o crl.pem
    systemctl reload mosquitto      # SIGHUP: mosquitto reads the list again

A revoked certificate can no longer connect; a connection it already has stays open until it
drops, which is why the VIN also leaves the fleet file (its ACL rights go on the same reload).
The list is valid ``--days`` days (default 365): OpenSSL refuses *every* client certificate
once it has expired, so re-issue it well before (the same command without ``--revoke``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from scripts.vehicle_cert import CaPair, CertificateError, load_ca

MAX_DAYS = 3650


def build_crl(ca: CaPair, revoked: dict[int, datetime], *, now: datetime, days: int = 365) -> bytes:
    """A CRL (PEM) listing ``revoked`` (serial -> revocation date), valid ``days`` from ``now``."""
    if not 1 <= days <= MAX_DAYS:
        raise CertificateError(f"--days must be between 1 and {MAX_DAYS}")
    ca_cert, ca_key = ca
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - timedelta(hours=1))
        .next_update(now + timedelta(days=days))
    )
    for serial, when in sorted(revoked.items()):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(ca_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)


def revoked_so_far(ca: CaPair, crl_pem: bytes) -> dict[int, datetime]:
    """The entries of an existing list, which must be signed by this CA."""
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"cannot read the revocation list: {exc}") from exc
    if not crl.is_signature_valid(ca[0].public_key()):  # type: ignore[arg-type]
        raise CertificateError("the revocation list is not signed by this CA")
    return {entry.serial_number: entry.revocation_date_utc for entry in crl}


def serial_of(ca: CaPair, cert_pem: bytes) -> int:
    """The serial of a certificate this CA issued."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CertificateError(f"cannot read the certificate: {exc}") from exc
    if cert.issuer != ca[0].subject:
        raise CertificateError("the certificate was not issued by this CA")
    return cert.serial_number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.vehicle_crl", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--ca", type=Path, required=True, help="the CA certificate (PEM)")
    parser.add_argument("--ca-key", type=Path, required=True, help="the CA private key (PEM)")
    parser.add_argument("--crl", type=Path, help="the current list, whose entries are kept")
    parser.add_argument("--revoke", type=Path, action="append", default=[], metavar="CERT")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    try:
        ca = load_ca(args.ca.read_bytes(), args.ca_key.read_bytes())
        revoked = revoked_so_far(ca, args.crl.read_bytes()) if args.crl else {}
        for path in args.revoke:
            revoked.setdefault(serial_of(ca, path.read_bytes()), now)
        pem = build_crl(ca, revoked, now=now, days=args.days)
    except (OSError, CertificateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.output.write_bytes(pem)
    print(f"{args.output}: {len(revoked)} revoked certificate(s), valid {args.days} days")
    return 0


if __name__ == "__main__":
    sys.exit(main())
