package token_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/internal/sealtest"
	"github.com/sowerproject/sower/authn/token"
)

// A node issues a token after a login and verifies it on a later request.
// The server's key store is etcd and its sealer the data key.
func Example() {
	ctx := context.Background()
	tokens, err := token.New(token.Config{Keys: token.NewMemKeyStore(), Sealer: sealtest.New()})
	if err != nil {
		panic(err)
	}
	if err := tokens.EnsureKey(ctx); err != nil {
		panic(err)
	}

	tok, _ := tokens.Issue("host/myapp")
	header := tok.AuthorizationHeader() // what the client sends back

	raw, _ := token.ParseAuthorization(header)
	claims, err := tokens.Verify(ctx, raw)
	fmt.Println(claims.Subject, claims.Expires.Sub(claims.IssuedAt), err)

	_, err = token.ParseAuthorization("Bearer abc")
	reason, _ := authn.ReasonOf(err)
	fmt.Println(errors.Is(err, authn.ErrUnauthenticated), err, reason)
	// Output:
	// host/myapp 8m0s <nil>
	// true authn: authentication failed malformed
}
