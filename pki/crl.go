package pki

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"
)

// CRL returns a DER certificate revocation list of serials, signed by the
// issuing CA. Peers that only read CRL files (etcd's client and peer
// listeners) refuse what it lists, so the server keeps one current next to
// the in-memory RevokedSet every sower handshake consults. number must grow
// with every list issued.
func (ca *CA) CRL(serials []*big.Int, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	st := ca.state.Load()
	entries := make([]x509.RevocationListEntry, 0, len(serials))
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: now})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now.Add(-backdate),
		NextUpdate:                now.Add(validity),
		RevokedCertificateEntries: entries,
	}, st.chain[0], st.signer)
	if err != nil {
		return nil, fmt.Errorf("pki: sign the revocation list: %w", err)
	}
	return der, nil
}
