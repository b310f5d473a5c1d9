package archive

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
)

// A pooled recipient's files open with age's own X25519 identity, every
// file gets its own ephemeral key, and another identity cannot open them.
func TestPooledRecipientInteroperates(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := age.GenerateX25519Identity()
	pool := NewEphemerals(2)
	defer pool.Stop()
	r, err := PooledRecipient(id.Recipient(), pool)
	if err != nil {
		t.Fatal(err)
	}
	shares := map[string]bool{}
	for i := range 5 {
		var sealed bytes.Buffer
		w, err := age.Encrypt(&sealed, r)
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.Repeat("seed ", 100+i)
		io.WriteString(w, msg)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		stanzas, err := r.Wrap(make([]byte, 16))
		if err != nil || len(stanzas) != 1 || len(stanzas[0].Args) != 1 {
			t.Fatalf("Wrap = %v, %v", stanzas, err)
		}
		if shares[stanzas[0].Args[0]] {
			t.Fatal("an ephemeral key was used twice")
		}
		shares[stanzas[0].Args[0]] = true

		rd, err := age.Decrypt(bytes.NewReader(sealed.Bytes()), id)
		if err != nil {
			t.Fatalf("age.Decrypt: %v", err)
		}
		got, _ := io.ReadAll(rd)
		if string(got) != msg {
			t.Fatalf("decrypted %d bytes, want %d", len(got), len(msg))
		}
		if _, err := age.Decrypt(bytes.NewReader(sealed.Bytes()), other); err == nil {
			t.Fatal("another identity opened the file")
		}
	}
}

func TestDecodeAgeRecipient(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	s := id.Recipient().String()
	if _, err := decodeAgeRecipient(s); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	if _, err := decodeAgeRecipient(strings.ToUpper(s)); err != nil {
		t.Fatalf("decode upper case: %v", err)
	}
	flip := []byte(s)
	if flip[10] == 'q' {
		flip[10] = 'p'
	} else {
		flip[10] = 'q'
	}
	for _, bad := range []string{"", "age1", "abc1qqqqqqqq", string(flip), s[:len(s)-1], "age1" + strings.Repeat("b", 58)} {
		if _, err := decodeAgeRecipient(bad); !errors.Is(err, ErrBadRecipient) {
			t.Errorf("decode %q = %v, want ErrBadRecipient", bad, err)
		}
	}
}
