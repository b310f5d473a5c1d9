package k8s_test

import (
	"context"
	"testing"

	"github.com/sowerproject/sower/authn/jwt"
	"github.com/sowerproject/sower/authn/k8s"
)

// BenchmarkAuthenticate is a service-account token → host, in process. The
// namespace form with no Kubernetes client is the JWT work alone; the
// deployment form adds the three API reads (pod, replica set, deployment)
// over loopback HTTP.
func BenchmarkAuthenticate(b *testing.B) {
	cases := map[string]struct {
		kube bool
		host string
	}{
		"namespace, no API":     {host: apps + "shop/*/*"},
		"namespace, pod check":  {kube: true, host: apps + "shop/*/*"},
		"deployment, API chain": {kube: true, host: apps + "shop/deployment/web"},
	}
	for name, c := range cases {
		b.Run(name, func(b *testing.B) {
			f := newFixture(b, jwt.Settings{}, c.kube)
			req := k8s.Request{Token: f.token(b, webPod, nil), Host: c.host}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.auth.Authenticate(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
