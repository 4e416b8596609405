#!/usr/bin/env python3
"""Check, independently of certctl, that nodes serve the store's live leaves.

For every certificate NAME of the inventory's store (STORE/live/NAME/cert.pem)
and every node address, handshake with the node on 443 sending the
certificate's first domain as SNI and compare the served leaf with the
store's, byte for byte. Handshakes run 32 at a time. Prints one line:

    served_ok=N served_wrong=W unreachable=U

and exits 0 only if every (certificate, node) pair serves the store's leaf.

Usage: served.py STORE DOMAIN_FORMAT NAMES_FILE ADDRESS...
  DOMAIN_FORMAT: the SNI, with {num} replaced by the digits that end the
                 name: "l{num}.load.example.test" for load001 -> l001.load.example.test
"""

import concurrent.futures
import socket
import ssl
import sys


def served_leaf(addr, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((addr, 443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            return tls.getpeercert(binary_form=True)


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    store, pattern, names_file = sys.argv[1], sys.argv[2], sys.argv[3]
    addrs = sys.argv[4:]
    with open(names_file) as f:
        names = [line.strip() for line in f if line.strip()]
    want = {}
    for n in names:
        with open(f"{store}/live/{n}/cert.pem") as f:
            pem = f.read()
        first = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
        want[n] = ssl.PEM_cert_to_DER_cert(first)
    jobs = [(n, a) for n in names for a in addrs]
    ok = wrong = unreachable = 0
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        futures = {pool.submit(served_leaf, a, pattern.replace("{num}", n[len(n.rstrip("0123456789")) :])): (n, a) for n, a in jobs}
        for fut in concurrent.futures.as_completed(futures):
            n, a = futures[fut]
            try:
                if fut.result() == want[n]:
                    ok += 1
                else:
                    wrong += 1
                    if wrong <= 5:
                        print(f"served.py: {a} serves another leaf for {n}", file=sys.stderr)
            except OSError as e:
                unreachable += 1
                if unreachable <= 5:
                    print(f"served.py: {a} for {n}: {e}", file=sys.stderr)
    print(f"served_ok={ok} served_wrong={wrong} unreachable={unreachable}")
    sys.exit(0 if ok == len(jobs) else 1)


if __name__ == "__main__":
    main()
