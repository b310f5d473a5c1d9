# -*- coding: utf-8 -*-
"""sower_pinned_ca: pick the certificate a CA pin names out of a PEM bundle.

A sower CA pin is "sha256:" and the hex SHA-256 of a certificate's DER
SubjectPublicKeyInfo, as printed by `sower ca pin` (kubeadm's
--discovery-token-ca-cert-hash format). The controller fetches the Leader's
CA bundle (GET /ca) without verifying it, keeps only the certificate whose
key the pin names, and from then on trusts that certificate alone
(ansible.builtin.uri's ca_path): an impostor's bundle has no certificate
that matches, and extra certificates it might carry are never trusted.

The SubjectPublicKeyInfo is read byte for byte from the certificate's DER
(as Go's x509.Certificate.RawSubjectPublicKeyInfo is), not re-encoded, so
the hash matches the one sower computes. Only the Python standard library is
used: nothing beyond ansible-core is needed on the controller.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import hmac
import re

from ansible.errors import AnsibleFilterError

PIN_PREFIX = "sha256:"
_PEM_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S
)


def _read_tlv(der, pos):
    """Return (tag, start of contents, end of contents) of the DER element at pos."""
    if pos + 2 > len(der):
        raise ValueError("truncated DER")
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[pos:pos + n], "big")
        pos += n
    if pos + length > len(der):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def spki_der(cert_der):
    """The raw DER SubjectPublicKeyInfo of an X.509 certificate.

    Certificate ::= SEQUENCE { tbsCertificate, ... }
    TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber,
        signature, issuer, validity, subject, subjectPublicKeyInfo, ... }
    """
    tag, start, _ = _read_tlv(cert_der, 0)
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, pos, end = _read_tlv(cert_der, start)
    if tag != 0x30:
        raise ValueError("no tbsCertificate")
    tag, _, next_pos = _read_tlv(cert_der, pos)
    if tag == 0xA0:  # explicit version
        pos = next_pos
    # serialNumber, signature, issuer, validity, subject
    for _ in range(5):
        _, _, pos = _read_tlv(cert_der, pos)
    if pos >= end:
        raise ValueError("no subjectPublicKeyInfo")
    tag, _, spki_end = _read_tlv(cert_der, pos)
    if tag != 0x30:
        raise ValueError("subjectPublicKeyInfo is not a SEQUENCE")
    return cert_der[pos:spki_end]


def pin_of(cert_der):
    """The sower pin of a DER certificate."""
    return PIN_PREFIX + hashlib.sha256(spki_der(cert_der)).hexdigest()


def sower_pinned_ca(bundle, pin):
    """Return the PEM of the certificate in bundle whose key pin names.

    Fails, naming what to do, when the pin is malformed, the bundle holds
    no certificate, or none matches.
    """
    pin = (pin or "").strip().lower()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", pin):
        raise AnsibleFilterError(
            "sower_ca_pin must be 'sha256:' followed by 64 hex digits; "
            "run `sower ca pin` on the Leader to get it"
        )
    blocks = _PEM_RE.findall(bundle or "")
    if not blocks:
        raise AnsibleFilterError(
            "the Leader's /ca answer holds no PEM certificate; check sower_leader_url"
        )
    for block in blocks:
        try:
            der = base64.b64decode("".join(block.split()), validate=True)
            got = pin_of(der)
        except (ValueError, TypeError):
            continue
        if hmac.compare_digest(got, pin):
            body = base64.encodebytes(der).decode("ascii").replace("\n", "")
            lines = [body[i:i + 64] for i in range(0, len(body), 64)]
            return (
                "-----BEGIN CERTIFICATE-----\n"
                + "\n".join(lines)
                + "\n-----END CERTIFICATE-----\n"
            )
    raise AnsibleFilterError(
        "no certificate of the CA bundle served at sower_leader_url matches "
        "sower_ca_pin: either the pin is not this cluster's (run `sower ca pin` "
        "on the Leader) or something other than the Leader answered"
    )


class FilterModule(object):
    def filters(self):
        return {"sower_pinned_ca": sower_pinned_ca}
