package archive_test

import (
	"bytes"
	"io"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sowerproject/sower/seed/archive"
)

// A Follower seed as the seed service makes it: CA bundle, server
// certificate and key, replication client certificate and key, a 32-byte
// data key, signed with an ECDSA P-256 certificate under the cluster CA.

func BenchmarkSealFollowerSeed(b *testing.B) {
	p := newPKI(b, keyP256, shapeLeaf)
	builder := p.builder(b)
	to := newIdentity(b).Recipient()
	files := followerFiles(p)
	md := testMetadata(p.pin, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := builder.Seal(io.Discard, to, md, files); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWritePlainFollowerSeed(b *testing.B) {
	p := newPKI(b, keyP256, shapeLeaf)
	builder := p.builder(b)
	files := followerFiles(p)
	md := testMetadata(p.pin, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := builder.WritePlain(io.Discard, md, files); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenFollowerSeed is decrypt and verify, without writing.
func BenchmarkOpenFollowerSeed(b *testing.B) {
	p := newPKI(b, keyP256, shapeLeaf)
	id := newIdentity(b)
	sealed := buildSealed(b, p, id.Recipient(), testMetadata(p.pin, time.Now()), followerFiles(p))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := archive.Open(bytes.NewReader(sealed), p.pin, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnpackFollowerSeed is decrypt, verify and the atomic, fsynced
// write into a new directory.
func BenchmarkUnpackFollowerSeed(b *testing.B) {
	p := newPKI(b, keyP256, shapeLeaf)
	id := newIdentity(b)
	sealed := buildSealed(b, p, id.Recipient(), testMetadata(p.pin, time.Now()), followerFiles(p))
	base := b.TempDir()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		// A parent of its own, so that the cost does not grow with the
		// number of seeds unpacked before.
		dir := filepath.Join(base, strconv.Itoa(i), "seed")
		if _, err := archive.Unpack(bytes.NewReader(sealed), dir, p.pin, id); err != nil {
			b.Fatal(err)
		}
	}
}
