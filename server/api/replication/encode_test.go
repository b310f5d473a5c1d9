package replication

import (
	"testing"

	"google.golang.org/protobuf/proto"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
	"github.com/sowerproject/sower/replica"
)

// A broadcast message is encoded once for every Follower it goes to, with
// the Leader each stream names, and decodes to what each Follower would
// have been sent; a snapshot page is encoded each time.
func TestEncodingsShareABroadcast(t *testing.T) {
	var enc encodings
	calls := 0
	encode := func(m replica.Message, leader string) *encoded {
		t.Helper()
		e, err := enc.get(m, leader, "https://"+leader, func() ([]byte, error) {
			calls++
			resp := MessageToProto(m)
			resp.LeaderName, resp.LeaderUrl = leader, "https://"+leader
			return proto.Marshal(resp)
		})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	change := &replica.Change{Revision: 7, Puts: []replica.KV{{Key: "/sower/policy/a", Value: []byte("1")}}}
	first := encode(replica.Message{Change: change, Head: 7}, "leader-1")
	if again := encode(replica.Message{Change: change, Head: 7}, "leader-1"); again != first || calls != 1 {
		t.Fatalf("the same change was encoded %d times", calls)
	}
	if other := encode(replica.Message{Change: change, Head: 7}, "leader-2"); other == first || calls != 2 {
		t.Fatal("a change sent under another Leader reused the first encoding")
	}
	encode(replica.Message{Progress: 9, Head: 9}, "leader-1")
	encode(replica.Message{Progress: 9, Head: 9}, "leader-1")
	if calls != 3 {
		t.Fatalf("a progress mark was encoded %d times", calls-2)
	}
	page := replica.Message{Snapshot: []replica.KV{{Key: "/sower/policy/b", Value: []byte("2")}}, Head: 9}
	encode(page, "leader-1")
	encode(page, "leader-1")
	if calls != 5 {
		t.Fatalf("snapshot pages were encoded %d times, want each", calls-3)
	}

	// On the wire: the codec sends the bytes, and they decode whole.
	data, err := Codec{}.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	var got sowerv1.FollowResponse
	if err := (Codec{}).Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	m := MessageFromProto(&got)
	if m.Change == nil || m.Change.Revision != 7 || string(m.Change.Puts[0].Value) != "1" || got.GetLeaderName() != "leader-1" {
		t.Fatalf("decoded %+v (leader %q), want the change at 7 from leader-1", m, got.GetLeaderName())
	}
	// Anything else is the proto codec's.
	want, _ := proto.Marshal(&sowerv1.FollowRequest{Cursor: 3})
	plain, err := Codec{}.Marshal(&sowerv1.FollowRequest{Cursor: 3})
	if err != nil || string(plain.Materialize()) != string(want) {
		t.Fatalf("a plain message: %x (%v), want %x", plain.Materialize(), err, want)
	}
	if (Codec{}).Name() != "proto" {
		t.Fatal("the codec must be proto on the wire")
	}
}
