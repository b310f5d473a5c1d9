// Package pki is sower's public key infrastructure: the cluster CA, the
// certificate profiles it issues under, revocation, the data key that seals
// every secret sower keeps in etcd, the mutual-TLS configs of every link, and
// the automatic renewal of each node's certificates. It knows nothing of
// etcd, gRPC or flags: storage is the Store interface its caller implements,
// revocation data comes through RevocationProvider, time through Clock.
//
// # Phases
//
// Bootstrap (Leader, once). Inputs: an empty Store, a new data keyring.
// Outputs: the data key file, the CA record in the Store, the CA pin.
//
//	keyring, _ := pki.GenerateKeyring()
//	_ = keyring.CreateFile(filepath.Join(dataDir, "data.key"))   // 0600, never overwrites
//	ca, _ := pki.Bootstrap(ctx, pki.Config{Store: store, Sealer: keyring})
//	fmt.Println(ca.Pin())                                         // sha256:...
//
// Import replaces Bootstrap when the operator brings a root or intermediate
// (PEM certificate and key). Load reads the stored CA on any node holding the
// data key: this is how a Standby takes over issuing after a failover.
//
// Issue (Leader). One function applies any profile of the table
// (DefaultProfiles, adjustable with WithProfiles); a request outside its
// profile is refused with a *ProfileError naming the rule:
//
//	crt, err := ca.Issue(ctx, pki.ProfileFollowerServer, pki.Request{
//		CommonName: "follower-0",
//		DNSNames:   []string{"conjur-follower.conjur.svc.cluster.local"},
//	})
//
// Serve and dial (every node). A Renewer holds the node's certificate and
// replaces it at two thirds of its life; the TLS configs take it as their
// CertificateSource and verify peers against the CA, the revoked set and,
// for a joining node that has only a pin, the pin:
//
//	r, _ := pki.NewRenewer(pki.RenewerConfig{Certificate: crt, Renew: renew})
//	go r.Run(ctx)
//	srv, _ := pki.ServerTLS(ca.Roots(), r, pki.WithRevocations(revoked))
//	cli, _ := pki.ClientTLS(ca.Roots(), "leader.example", r, pki.WithRevocations(revoked))
//	first, _ := pki.PinnedClientTLS(pin, "leader.example", nil)
//
// Every refusal wraps a sentinel that says which check failed: ErrPinMismatch,
// ErrExpired, ErrRevoked, ErrNameMismatch, ErrUnknownCA, ErrWrongUsage,
// ErrWrongProfile.
//
// Seal (everything secret in etcd). Keyring.Seal encrypts with AES-256-GCM
// under the newest data key version, bound to the etcd key path; Rewrap
// re-seals stored values after Keyring.Rotate. See docs/pki.md.
package pki
