package pki_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/sowerproject/sower/pki"
	"github.com/sowerproject/sower/pki/pkitest"
)

// Bootstrap a cluster CA, issue a Follower certificate, and see a request
// outside its profile refused with the rule it broke.
func Example() {
	ctx := context.Background()
	keyring, _ := pki.GenerateKeyring() // the data key; keyring.CreateFile(path) keeps it
	store := pkitest.NewMemStore()      // the server passes its etcd-backed Store
	ca, err := pki.Bootstrap(ctx, pki.Config{Store: store, Sealer: keyring})
	if err != nil {
		panic(err)
	}
	defer ca.Close()
	fmt.Println("pin:", strings.HasPrefix(ca.Pin().String(), "sha256:"))

	crt, err := ca.Issue(ctx, pki.ProfileFollowerServer, pki.Request{
		CommonName: "follower-0",
		DNSNames:   []string{"conjur-follower.conjur.svc.cluster.local"},
	})
	if err != nil {
		panic(err)
	}
	profile, _ := pki.ProfileOf(crt.Leaf())
	fmt.Println(profile, crt.Leaf().DNSNames[0], len(crt.Chain))

	_, err = ca.Issue(ctx, pki.ProfileFollowerServer, pki.Request{CommonName: "follower-0"})
	fmt.Println(err)
	// Output:
	// pin: true
	// follower-server conjur-follower.conjur.svc.cluster.local 3
	// pki: profile "follower-server" refuses the request (rule dns-required): at least one DNS name is required (the name clients dial)
}

// A sealed value opens only under the key path it was sealed for.
func ExampleKeyring_Seal() {
	keyring, _ := pki.GenerateKeyring()
	sealed, _ := keyring.Seal("/sower/authn/signing-key", []byte("secret"))

	plain, err := keyring.Open("/sower/authn/signing-key", sealed)
	fmt.Printf("%s %v\n", plain, err)
	_, err = keyring.Open("/sower/authn/other-key", sealed)
	fmt.Println(err)
	// Output:
	// secret <nil>
	// open "/sower/authn/other-key": pki: sealed value failed authentication: it was sealed for another key path, or modified
}
