package k8s_test

import (
	"testing"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/k8s"
)

// FuzzApplicationIdentity feeds arbitrary host ids and annotation values to
// the host-id and annotation parsers: no panics, failures are refusals, and
// an accepted identity always names a namespace and at most one controller.
func FuzzApplicationIdentity(f *testing.F) {
	for _, s := range []string{"shop/*/*", "shop/deployment/web", "ops/deployment_config/legacy", "a/b/c/d", "/*/*", "shop/pod/"} {
		f.Add(apps+s, "", "")
	}
	f.Add("host/x", "authn-k8s/namespace", "shop")
	f.Add("host/x", "authn-k8s/prod/deployment", "web")
	f.Add("host/x", "authn-k8s/prod/x/y", "z")
	f.Fuzz(func(t *testing.T, hostID, annName, annValue string) {
		ann := map[string]string{annName: annValue, "authn-k8s/namespace": "shop"}
		if annName == "" {
			ann = nil
		}
		id, err := k8s.ApplicationIdentity("prod", hostID, ann)
		if err != nil {
			if _, ok := err.(*authn.Refusal); !ok {
				t.Fatalf("error %v (%T) is not a refusal", err, err)
			}
			return
		}
		if id.Namespace == "" {
			t.Fatalf("identity without namespace from %q %v", hostID, ann)
		}
		n := 0
		for _, r := range []k8s.Resource{k8s.Deployment, k8s.DeploymentConfig, k8s.StatefulSet} {
			if _, ok := id.Constraints[r]; ok {
				n++
			}
		}
		if n > 1 {
			t.Fatalf("identity with %d controllers: %+v", n, id)
		}
		_ = id.String()
	})
}
