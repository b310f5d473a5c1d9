package queue

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/sowerproject/sower/audit"
)

// A segment file is a sequence of records:
//
//	uint32 length of payload (big endian)
//	uint32 CRC-32C of payload
//	payload: uint64 sequence (big endian), then the event as JSON
//
// A record is whole only when its length, checksum and sequence are
// right; the first one that is not ends what the reader takes (a write cut
// by a crash, a torn sector), and the file is truncated there.
const (
	headerBytes = 8
	seqBytes    = 8
	// maxPayload bounds what the reader allocates for one record.
	maxPayload = seqBytes + audit.MaxEventBytes
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt marks a record that is not whole; what precedes it is good.
var ErrCorrupt = errors.New("audit queue: corrupt record")

// appendRecord encodes one record onto buf.
func appendRecord(buf []byte, seq uint64, data []byte) []byte {
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(seqBytes+len(data)))
	buf = append(buf, 0, 0, 0, 0) // the checksum, once the payload is in place
	buf = binary.BigEndian.AppendUint64(buf, seq)
	buf = append(buf, data...)
	binary.BigEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[start+headerBytes:], castagnoli))
	return buf
}

// recordSize is the bytes a record of data takes in a segment.
func recordSize(data []byte) int64 { return int64(headerBytes + seqBytes + len(data)) }

// readSegment calls fn for each whole record of r, in order, and returns
// the offset just past the last one. Sequences must increase strictly and
// be above after. It stops at the end of r (err nil) or at the first
// record that is not whole (err wraps ErrCorrupt); either way good is
// where a writer may continue.
func readSegment(r io.Reader, after uint64, fn func(seq uint64, data []byte)) (good int64, err error) {
	br := bufio.NewReader(r)
	var hdr [headerBytes]byte
	last := after
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return good, nil
			}
			return good, fmt.Errorf("%w at offset %d: short header", ErrCorrupt, good)
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n < seqBytes || n > maxPayload {
			return good, fmt.Errorf("%w at offset %d: length %d outside [%d, %d]", ErrCorrupt, good, n, seqBytes, maxPayload)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return good, fmt.Errorf("%w at offset %d: short record", ErrCorrupt, good)
		}
		if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
			return good, fmt.Errorf("%w at offset %d: checksum mismatch", ErrCorrupt, good)
		}
		seq := binary.BigEndian.Uint64(payload)
		if seq <= last {
			return good, fmt.Errorf("%w at offset %d: sequence %d after %d", ErrCorrupt, good, seq, last)
		}
		last = seq
		fn(seq, payload[seqBytes:])
		good += int64(headerBytes) + int64(n)
	}
}
