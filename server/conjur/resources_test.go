package conjur_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cyberark/conjur-api-go/conjurapi"
)

// conjur list shows each variable's secret versions and each host
// factory's layers and tokens, as Conjur's listing does (its as_json with
// secrets eager-loaded): a page of few variables (read one by one) and a
// listing of many (read in one scan) alike.
func TestCLIListingShowsSecretsAndHostFactories(t *testing.T) {
	l := startLeader(t)
	admin := newClient(t, l, "admin", l.adminKey)
	var text strings.Builder
	for i := range 40 {
		fmt.Fprintf(&text, "- !variable v%02d\n", i)
	}
	text.WriteString("- !layer nodes\n- !host-factory\n  id: factory\n  layers: [ !layer nodes ]\n")
	load(t, admin, conjurapi.PolicyModePost, "root", text.String())
	for _, v := range []string{"v00", "v00", "v07", "v39"} {
		if err := admin.AddSecret("acme:variable:"+v, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.CreateToken("1h", "acme:host_factory:factory", []string{"10.0.0.0/8"}, 1); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"acme:variable:v00": `[{"version":1,"expires_at":null},{"version":2,"expires_at":null}]`,
		"acme:variable:v07": `[{"version":1,"expires_at":null}]`,
		"acme:variable:v39": `[{"version":1,"expires_at":null}]`,
		"acme:variable:v01": `[]`,
	}
	for name, query := range map[string]string{"all variables": "?kind=variable", "a page": "?kind=variable&limit=8", "every kind": ""} {
		t.Run(name, func(t *testing.T) {
			code, body := call(t, admin, "GET", l.url+"/resources/acme"+query, "")
			var rs []map[string]json.RawMessage
			if code != http.StatusOK || json.Unmarshal(body, &rs) != nil {
				t.Fatalf("list: %d %s", code, body)
			}
			seen := 0
			for _, r := range rs {
				var id string
				_ = json.Unmarshal(r["id"], &id)
				if w, ok := want[id]; ok {
					seen++
					if string(r["secrets"]) != w {
						t.Errorf("%s secrets %s, want %s", id, r["secrets"], w)
					}
				}
				if id == "acme:host_factory:factory" {
					seen++
					if string(r["layers"]) != `["acme:layer:nodes"]` || !strings.Contains(string(r["tokens"]), `"cidr":["10.0.0.0/8"]`) {
						t.Errorf("host factory listed with layers %s, tokens %s", r["layers"], r["tokens"])
					}
				}
			}
			if seen == 0 {
				t.Fatalf("the listing %s has none of the resources checked", body)
			}
		})
	}
}
