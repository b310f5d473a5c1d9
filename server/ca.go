package server

import (
	"context"

	caapi "github.com/sowerproject/sower/server/api/ca"
	"github.com/sowerproject/sower/server/etcdstore"
)

// caService wires CAService: bundle and pin from the node's CA, revocations
// in etcd, data key rotation through dataKeys, and the policy graph deciding
// who is the admin.
func (s *Server) caService(d serviceDeps, allowed func(role, privilege, resource string) bool) (*caapi.Service, error) {
	return caapi.New(caapi.Config{
		Account:     s.c.Account,
		Bundle:      func() ([]byte, string) { return d.pki.ca.BundlePEM(), d.pki.ca.Pin().String() },
		Revocations: etcdstore.NewRevocations(d.etcd.Client()),
		Rotate: func(ctx context.Context) (caapi.RotateResult, error) {
			r, err := d.dataKeys.Rotate(ctx)
			return caapi.RotateResult{Version: r.Version, Members: r.Members, Resealed: r.Resealed, Current: r.Current}, err
		},
		Allowed: allowed,
		Logger:  s.lg,
	})
}
