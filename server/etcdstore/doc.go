// Package etcdstore backs the domain packages' storage interfaces with etcd.
// Each domain declares the small interface it needs (pki.Store,
// apikey.Store, token.KeyStore, ...); this package is where they meet etcd,
// so the domains stay free of it. Keys reach etcd unchanged: sealed values
// are bound to their key path.
package etcdstore
