package replication

import (
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/sowerproject/sower/replica"
)

// Codec is gRPC's proto codec, except that a feed message the service
// encoded once for every Follower it goes to is sent as it is. A node
// serving the feed installs it (grpc.ForceServerCodecV2(replication.Codec{}));
// without it, Follow encodes each message for each Follower.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

func protoCodec() encoding.CodecV2 { return encoding.GetCodecV2(proto.Name) }

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	if e, ok := v.(*encoded); ok {
		// A SliceBuffer is never returned to a pool: every stream may
		// send the same bytes.
		return mem.BufferSlice{mem.SliceBuffer(e.b)}, nil
	}
	return protoCodec().Marshal(v)
}

// Unmarshal implements encoding.CodecV2.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error { return protoCodec().Unmarshal(data, v) }

// Name implements encoding.CodecV2: it is the proto codec on the wire.
func (Codec) Name() string { return proto.Name }

// encoded is a FollowResponse already marshalled.
type encoded struct{ b []byte }

// encodings keeps the last messages encoded for the hub's broadcast: the
// hub hands every Follower the same change (one *replica.Change) or the
// same progress mark, so the first Follower's stream encodes it and the
// others send its bytes.
type encodings struct {
	mu   sync.Mutex
	byID map[msgID]*encoded
	ring [encodingsKept]msgID
	next int
}

// encodingsKept is how many messages are kept: Followers more than that
// many messages apart encode for themselves.
const encodingsKept = 256

// msgID names one broadcast message and what the service adds to it.
type msgID struct {
	change         *replica.Change
	progress, head int64
	leader, url    string
}

// get returns the encoding of m with the Leader named, made by encode
// the first time; ok is false for a message the hub does not broadcast
// (a snapshot's), which is not kept.
func (c *encodings) get(m replica.Message, leader, url string, encode func() ([]byte, error)) (*encoded, error) {
	if m.Change == nil && m.Progress == 0 {
		b, err := encode()
		return &encoded{b}, err
	}
	id := msgID{change: m.Change, progress: m.Progress, head: m.Head, leader: leader, url: url}
	c.mu.Lock()
	if e, ok := c.byID[id]; ok {
		c.mu.Unlock()
		return e, nil
	}
	c.mu.Unlock()
	b, err := encode()
	if err != nil {
		return nil, err
	}
	e := &encoded{b}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = make(map[msgID]*encoded, encodingsKept)
	}
	if old, ok := c.byID[id]; ok {
		return old, nil
	}
	delete(c.byID, c.ring[c.next])
	c.ring[c.next] = id
	c.next = (c.next + 1) % encodingsKept
	c.byID[id] = e
	return e, nil
}
