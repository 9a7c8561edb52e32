"""A throwaway certificate authority (trustme) for the demo and the full-chain tests: one CA,
one server certificate for 127.0.0.1/localhost (the broker and the webhook receiver). The CA's
key is kept too (0600), so that ``scripts.vehicle_cert`` can issue vehicles' client certificates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path
    ca_key_file: Path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="edgemon throwaway CA")
    leaf = ca.issue_cert("127.0.0.1", "localhost", common_name="localhost")
    pki = Pki(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "ca.key",
    )
    ca.cert_pem.write_to_path(str(pki.ca_file))
    pki.ca_key_file.touch(mode=0o600)
    ca.private_key_pem.write_to_path(str(pki.ca_key_file))
    leaf.cert_chain_pems[0].write_to_path(str(pki.cert_file))
    for extra in leaf.cert_chain_pems[1:]:
        extra.write_to_path(str(pki.cert_file), append=True)
    leaf.private_key_pem.write_to_path(str(pki.key_file))
    pki.key_file.chmod(0o600)
    return pki
