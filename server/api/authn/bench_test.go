package authn_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	sowerv1 "github.com/sowerproject/sower/proto/sower/v1"
)

// BenchmarkAuthenticateInProcess is the service's own cost per login, in
// parallel on every core, without TLS, HTTP or gRPC: the cached verifier,
// the policy graph's host, annotation and permission lookups, the access
// token, the audit record. ES256 tokens; no Kubernetes API.
func BenchmarkAuthenticateInProcess(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	key, err := f.keys.Rotate(ctx, "acme:user:alice")
	if err != nil {
		b.Fatal(err)
	}
	cases := map[string]func() error{
		"API key": func() error {
			_, err := f.svc.Authenticate(ctx, &sowerv1.AuthenticateRequest{Account: account, Login: "alice", ApiKey: key})
			return err
		},
	}
	k8sReq := jwtReq("prod", "conjur/authn-k8s/prod/apps/shop/*/*", f.sign(b, saClaims("shop", "web-1", "web")))
	cases["JWT authn-k8s namespace form"] = func() error { _, err := f.svc.AuthenticateJWT(ctx, k8sReq); return err }
	ciReq := jwtReq("ci", "", f.sign(b, ciClaims("build", "main")))
	cases["JWT authn-jwt token-app-property"] = func() error { _, err := f.svc.AuthenticateJWT(ctx, ciReq); return err }
	for name, login := range cases {
		b.Run(name, func(b *testing.B) {
			if err := login(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu0 := processCPU()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := login(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			// CPU per login does not depend on what else the machine runs.
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/login")
		})
	}
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
