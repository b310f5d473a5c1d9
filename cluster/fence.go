package cluster

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// FencedClient returns a client of the same etcd member whose writes (Put,
// Delete, Txn, Do of a write) commit only during this node's term as
// Leader, as Txn does; reads, watches and leases pass through. Give it to a
// store that was written against a plain *clientv3.Client: its writes then
// fail with a *NotLeaderError on a Standby and on a former Leader, and its
// own comparisons keep their meaning.
func (e *Election) FencedClient(cli *clientv3.Client) *clientv3.Client {
	f := clientv3.NewCtxClient(cli.Ctx())
	f.KV = &fencedKV{KV: cli.KV, e: e}
	f.Lease, f.Watcher, f.Cluster, f.Maintenance, f.Auth = cli.Lease, cli.Watcher, cli.Cluster, cli.Maintenance, cli.Auth
	return f
}

type fencedKV struct {
	clientv3.KV
	e *Election
}

func (f *fencedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	r, err := f.e.Txn(ctx, nil, []clientv3.Op{clientv3.OpPut(key, val, opts...)}, nil)
	if err != nil {
		return nil, err
	}
	resp := (*clientv3.PutResponse)(r.Responses[0].GetResponsePut())
	resp.Header = r.Header
	return resp, nil
}

func (f *fencedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	r, err := f.e.Txn(ctx, nil, []clientv3.Op{clientv3.OpDelete(key, opts...)}, nil)
	if err != nil {
		return nil, err
	}
	resp := (*clientv3.DeleteResponse)(r.Responses[0].GetResponseDeleteRange())
	resp.Header = r.Header
	return resp, nil
}

func (f *fencedKV) Do(ctx context.Context, op clientv3.Op) (clientv3.OpResponse, error) {
	switch {
	case op.IsGet():
		return f.KV.Do(ctx, op)
	case op.IsPut():
		r, err := f.e.Txn(ctx, nil, []clientv3.Op{op}, nil)
		if err != nil {
			return clientv3.OpResponse{}, err
		}
		resp := (*clientv3.PutResponse)(r.Responses[0].GetResponsePut())
		resp.Header = r.Header
		return resp.OpResponse(), nil
	case op.IsDelete():
		r, err := f.e.Txn(ctx, nil, []clientv3.Op{op}, nil)
		if err != nil {
			return clientv3.OpResponse{}, err
		}
		resp := (*clientv3.DeleteResponse)(r.Responses[0].GetResponseDeleteRange())
		resp.Header = r.Header
		return resp.OpResponse(), nil
	}
	cmps, then, els := op.Txn()
	r, err := f.e.Txn(ctx, cmps, then, els)
	if err != nil {
		return clientv3.OpResponse{}, err
	}
	return r.OpResponse(), nil
}

func (f *fencedKV) Txn(ctx context.Context) clientv3.Txn {
	return &fencedTxn{ctx: ctx, e: f.e, kv: f.KV}
}

// fencedTxn collects a transaction and commits it through Election.Txn.
type fencedTxn struct {
	ctx             context.Context
	e               *Election
	kv              clientv3.KV
	cmps            []clientv3.Cmp
	then, els       []clientv3.Op
	cif, cthen, cel bool
}

func (t *fencedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	if t.cif || t.cthen || t.cel {
		panic("cannot call If twice, or after Then or Else")
	}
	t.cif, t.cmps = true, cs
	return t
}

func (t *fencedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	if t.cthen || t.cel {
		panic("cannot call Then twice, or after Else")
	}
	t.cthen, t.then = true, ops
	return t
}

func (t *fencedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	if t.cel {
		panic("cannot call Else twice")
	}
	t.cel, t.els = true, ops
	return t
}

// Commit runs the transaction under the fence, unless it only reads.
func (t *fencedTxn) Commit() (*clientv3.TxnResponse, error) {
	if readOnly(t.then) && readOnly(t.els) {
		return t.kv.Txn(t.ctx).If(t.cmps...).Then(t.then...).Else(t.els...).Commit()
	}
	return t.e.Txn(t.ctx, t.cmps, t.then, t.els)
}

func readOnly(ops []clientv3.Op) bool {
	for _, op := range ops {
		if !op.IsGet() {
			return false
		}
	}
	return true
}
