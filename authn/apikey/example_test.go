package apikey_test

import (
	"context"
	"fmt"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/apikey"
)

func Example() {
	ctx := context.Background()
	pepper, _ := apikey.NewPepper(nil) // once per cluster, kept sealed in etcd
	keys, _ := apikey.New(apikey.Config{Store: apikey.NewMemStore(), Pepper: pepper})

	key, _ := keys.Rotate(ctx, "myorg:host:myapp")
	fmt.Println(len(key), keys.Verify(ctx, "myorg:host:myapp", key))

	err := keys.Verify(ctx, "myorg:host:myapp", "not-the-key")
	reason, _ := authn.ReasonOf(err)
	fmt.Println(err, reason)
	// Output:
	// 56 <nil>
	// authn: authentication failed bad_credentials
}
