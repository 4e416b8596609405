#!/usr/bin/python3
"""Make COUNT distinct certificates for the list benchmark, once, into DIR:

  DIR/ca.pem                 the issuing CA (self-signed, P-256)
  DIR/store/                 a certctl store: archive/<name>/<version>/{cert,chain,
                             fullchain,privkey}.pem + meta.json, live/<name> links
  DIR/inspect/<NNN>/<name>.pem   the same leaves, 100 a directory, for `certctl inspect`
  DIR/certificates.toml      one [[certificate]] table per name (solver SOLVER, group GROUP)
  DIR/done                   written last: COUNT, so a half-made DIR is made again

Each certificate has its own name (c00000.bench.example.test ...), serial and
validity (issued 0..79 days ago, 90 days long); they share one leaf key, which
keeps generation to a few seconds (needs python3-cryptography).

Usage: gen_certs.py DIR COUNT SOLVER GROUP
"""

import datetime
import json
import os
import secrets
import shutil
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEM = serialization.Encoding.PEM


def write(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv):
    if len(argv) != 5:
        sys.stderr.write(__doc__)
        return 64
    out, count, solver, group = argv[1], int(argv[2]), argv[3], argv[4]
    if os.path.exists(out):
        shutil.rmtree(out)
    for d in ["store/accounts", "store/archive", "store/live", "store/state", "inspect"]:
        os.makedirs(os.path.join(out, d), mode=0o700)

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certctl bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=100))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(PEM)
    write(os.path.join(out, "ca.pem"), ca_pem)

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    key_pem = leaf_key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    eku = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    tables = []
    for i in range(count):
        name = f"c{i:05d}"
        domain = f"{name}.bench.example.test"
        serial = secrets.randbits(63) | (1 << 62)
        not_before = now - datetime.timedelta(days=i % 80, minutes=i % 1440)
        not_after = not_before + datetime.timedelta(days=90)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
            .issuer_name(ca_name)
            .public_key(leaf_key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .add_extension(eku, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(PEM)
        version = not_before.strftime("%Y%m%dT%H%M%SZ") + f"-{secrets.randbits(32):08x}"
        vdir = os.path.join(out, "store", "archive", name, version)
        os.makedirs(vdir, mode=0o700)
        write(os.path.join(vdir, "privkey.pem"), key_pem, 0o600)
        write(os.path.join(vdir, "cert.pem"), cert_pem)
        write(os.path.join(vdir, "chain.pem"), ca_pem)
        write(os.path.join(vdir, "fullchain.pem"), cert_pem + ca_pem)
        meta = {
            "domains": [domain],
            "key_type": "ecdsa-p256",
            "serial": f"{serial:x}",
            "issuer": "CN=certctl bench CA",
            "not_before": rfc3339(not_before),
            "not_after": rfc3339(not_after),
            "directory": "https://127.0.0.1:14000/dir",
            "ari_id": None,
            "stored_at": rfc3339(not_before),
        }
        write(os.path.join(vdir, "meta.json"), json.dumps(meta, indent=2).encode())
        os.symlink(f"../archive/{name}/{version}", os.path.join(out, "store", "live", name))
        idir = os.path.join(out, "inspect", f"{i // 100:03d}")
        os.makedirs(idir, exist_ok=True)
        write(os.path.join(idir, f"{name}.pem"), cert_pem)
        tables.append(
            f'[[certificate]]\nname = "{name}"\ndomains = ["{domain}"]\n'
            f'solver = "{solver}"\ngroups = ["{group}"]\n'
        )
    write(os.path.join(out, "certificates.toml"), "\n".join(tables).encode())
    write(os.path.join(out, "done"), f"{count}\n".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
