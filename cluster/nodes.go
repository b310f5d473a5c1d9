package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// NodesPrefix holds one record per node of the quorum, how to reach it:
// /sower/cluster/nodes/<name>. Each node writes its own when it starts; the
// Leader deletes a removed member's. Seeds list these endpoints so that
// clients and Followers know every node, not only the Leader of the day.
const NodesPrefix = "/sower/cluster/nodes/"

// Node is how to reach one node of the quorum.
type Node struct {
	Name     string `json:"name"`
	MemberID uint64 `json:"member_id"`
	URL      string `json:"url"`
	GRPCAddr string `json:"grpc_addr"`
}

// PublishNode records how to reach this node, when the record differs.
// It is the one write a Standby makes itself: a fact about the node, not
// cluster state, written before it could take part in an election.
func PublishNode(ctx context.Context, cli *clientv3.Client, n Node) error {
	raw, err := json.Marshal(n)
	if err != nil {
		return err
	}
	key := NodesPrefix + n.Name
	_, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(key), "=", string(raw))).
		Else(clientv3.OpPut(key, string(raw))).Commit()
	if err != nil {
		return fmt.Errorf("cluster: publish this node's endpoints: %w", err)
	}
	return nil
}

// Nodes returns the published nodes, by name.
func Nodes(ctx context.Context, cli *clientv3.Client) ([]Node, error) {
	resp, err := cli.Get(ctx, NodesPrefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, fmt.Errorf("cluster: read the nodes' endpoints: %w", err)
	}
	out := make([]Node, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var n Node
		if json.Unmarshal(kv.Value, &n) == nil && n.Name != "" {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
