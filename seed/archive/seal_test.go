package archive

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
)

// TestSealAgeOpensWithAge: age.Decrypt opens what sealAge writes, for
// payloads around the 64 KiB chunk boundaries, through a bytes.Buffer
// (sealed in place) and any other writer, for age's own X25519 recipient
// and the pooled one.
func TestSealAgeOpensWithAge(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pool := NewEphemerals(4)
	defer pool.Stop()
	pooled, err := PooledRecipient(id.Recipient(), pool)
	if err != nil {
		t.Fatal(err)
	}
	recipients := map[string]age.Recipient{"x25519": id.Recipient(), "pooled": pooled}
	for _, n := range []int{0, 1, 512, 16 << 10, ageChunkSize - 1, ageChunkSize, ageChunkSize + 1, 2 * ageChunkSize, 2*ageChunkSize + 7} {
		plain := make([]byte, n)
		rand.Read(plain)
		for name, r := range recipients {
			for _, direct := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/%d/direct=%v", name, n, direct), func(t *testing.T) {
					var buf bytes.Buffer
					buf.WriteString("before")
					var w io.Writer = &buf
					if !direct {
						w = struct{ io.Writer }{&buf}
					}
					if err := sealAge(w, r, plain); err != nil {
						t.Fatal(err)
					}
					sealed := buf.Bytes()[len("before"):]
					rd, err := age.Decrypt(bytes.NewReader(sealed), id)
					if err != nil {
						t.Fatal(err)
					}
					got, err := io.ReadAll(rd)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, plain) {
						t.Fatalf("opened %d bytes, sealed %d, different", len(got), len(plain))
					}
				})
			}
		}
	}
}

// bodyRecipient and bodyIdentity wrap the file key in a stanza body of a
// chosen length, to check the header's base64 wrapping at 64 columns
// (the last line shorter than 64, empty when the body is a multiple of
// 48 bytes) against age's parser.
type bodyRecipient struct{ n int }

func (r bodyRecipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	body := bytes.Repeat([]byte{0x5a}, r.n)
	copy(body, fileKey)
	return []*age.Stanza{{Type: "test-body", Args: []string{fmt.Sprint(r.n), "x"}, Body: body}}, nil
}

type bodyIdentity struct{}

func (bodyIdentity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	for _, s := range stanzas {
		if s.Type == "test-body" && len(s.Args) == 2 && s.Args[0] == fmt.Sprint(len(s.Body)) && len(s.Body) >= ageFileKeySize {
			return s.Body[:ageFileKeySize], nil
		}
	}
	return nil, age.ErrIncorrectIdentity
}

func TestSealAgeStanzaWrapping(t *testing.T) {
	for _, n := range []int{16, 47, 48, 49, 95, 96, 97, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var buf bytes.Buffer
			if err := sealAge(&buf, bodyRecipient{n}, []byte("payload")); err != nil {
				t.Fatal(err)
			}
			rd, err := age.Decrypt(bytes.NewReader(buf.Bytes()), bodyIdentity{})
			if err != nil {
				t.Fatalf("%v\n%s", err, buf.Bytes())
			}
			if got, _ := io.ReadAll(rd); string(got) != "payload" {
				t.Fatalf("opened %q", got)
			}
		})
	}
}

// A stanza age could not parse back is refused, not written.
func TestSealAgeRefusesInvalidStanzas(t *testing.T) {
	for name, st := range map[string]*age.Stanza{
		"empty type":       {Type: "", Body: []byte("k")},
		"space in type":    {Type: "a b", Body: []byte("k")},
		"empty argument":   {Type: "t", Args: []string{""}, Body: []byte("k")},
		"newline in arg":   {Type: "t", Args: []string{"a\nb"}, Body: []byte("k")},
		"non-ASCII in arg": {Type: "t", Args: []string{"é"}, Body: []byte("k")},
	} {
		t.Run(name, func(t *testing.T) {
			err := sealAge(io.Discard, stanzaRecipient{st}, []byte("payload"))
			if err == nil || !strings.Contains(err.Error(), "invalid stanza") {
				t.Fatalf("sealed with %+v: %v", st, err)
			}
		})
	}
	if err := sealAge(io.Discard, stanzaRecipient{}, nil); err == nil {
		t.Fatal("sealed without a stanza")
	}
	wantErr := errors.New("wrap failed")
	if err := sealAge(io.Discard, failingRecipient{wantErr}, nil); !errors.Is(err, wantErr) {
		t.Fatalf("a failing recipient: %v", err)
	}
}

type stanzaRecipient struct{ s *age.Stanza }

func (r stanzaRecipient) Wrap([]byte) ([]*age.Stanza, error) {
	if r.s == nil {
		return nil, nil
	}
	return []*age.Stanza{r.s}, nil
}

type failingRecipient struct{ err error }

func (r failingRecipient) Wrap([]byte) ([]*age.Stanza, error) { return nil, r.err }
