package pki

import (
	"bytes"
	"encoding/pem"
	"testing"
)

// TestAppendPEMMatchesEncodingPEM: appendPEM writes exactly what
// encoding/pem does, for every length around the line boundaries.
func TestAppendPEMMatchesEncodingPEM(t *testing.T) {
	for n := 0; n < 400; n++ {
		der := bytes.Repeat([]byte{byte(n), 0xa5, 0x3c}, n)[:n]
		want := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
		got := appendPEM([]byte("prefix"), "CERTIFICATE", der)
		if !bytes.Equal(got[len("prefix"):], want) {
			t.Fatalf("%d bytes: got\n%s\nwant\n%s", n, got, want)
		}
		if s := pemSize("CERTIFICATE", n); s != len(want) {
			t.Fatalf("%d bytes: pemSize %d, encoded %d", n, s, len(want))
		}
	}
}
