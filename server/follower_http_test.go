package server

import (
	"net/http/httptest"
	"testing"
)

func TestFollowerTellsWritesFromReads(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		method, path string
		write        bool
	}{
		"secret read":         {"GET", "/secrets/acme/variable/db%2Fpassword", false},
		"batch read":          {"GET", "/secrets?variable_ids=acme:variable:a", false},
		"api-key login":       {"POST", "/authn/acme/host%2Fapp/authenticate", false},
		"jwt login":           {"POST", "/authn-jwt/k8s/acme/authenticate", false},
		"k8s login":           {"POST", "/authn-k8s/prod/acme/host%2Fapp/authenticate", false},
		"v1 login":            {"POST", "/v1/authn/acme/login", false},
		"v1 authenticate":     {"POST", "/v1/authn/acme/authenticate", false},
		"secret set":          {"POST", "/secrets/acme/variable/db%2Fpassword", true},
		"policy load":         {"POST", "/policies/acme/policy/root", true},
		"policy replace":      {"PUT", "/policies/acme/policy/root", true},
		"api key rotation":    {"PUT", "/authn/acme/api_key", true},
		"seed request":        {"POST", "/configuration/acme/seed/follower", true},
		"v1 seed":             {"POST", "/v1/seeds/follower", true},
		"v1 member removal":   {"DELETE", "/v1/cluster/members/standby-1", true},
		"login-named path v1": {"POST", "/v1/policies/acme/login", true},
		"hf token":            {"POST", "/host_factory_tokens", true},
		"hf token revoke":     {"DELETE", "/host_factory_tokens/abc", true},
		"hf host":             {"POST", "/host_factories/hosts", true},
		"v1 hf host":          {"POST", "/v1/host-factory-hosts", true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := isWrite(httptest.NewRequest(tc.method, tc.path, nil)); got != tc.write {
				t.Errorf("isWrite(%s %s) = %v, want %v", tc.method, tc.path, got, tc.write)
			}
		})
	}
}
