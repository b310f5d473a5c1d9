package policy_test

import (
	"fmt"

	"github.com/sowerproject/sower/policy"
)

// A policy load, end to end: create the account, load a policy into the
// root, store the change set (here: apply it to the graph) and check a
// permission.
func ExampleGraph_Plan() {
	g := policy.NewGraph()
	account, err := g.PlanAccount("myorg")
	if err != nil {
		panic(err)
	}
	// A real server stores account.Created in etcd first.
	if err := g.Apply(account); err != nil {
		panic(err)
	}

	cs, err := g.Plan(policy.LoadRequest{
		Policy: policy.NewID("myorg", policy.KindPolicy, policy.RootPolicy),
		Mode:   policy.Replace,
		Text: []byte(`
- !host follower-1
- !policy
  id: conjur/seed-generation
  body:
  - !webservice
  - !group consumers
  - !permit
    role: !group consumers
    privilege: execute
    resource: !webservice
- !grant
  role: !group conjur/seed-generation/consumers
  member: !host follower-1
`),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("new hosts:", cs.NewRoles)
	if err := g.Apply(cs); err != nil {
		panic(err)
	}

	host := policy.NewID("myorg", policy.KindHost, "follower-1")
	seeds := policy.NewID("myorg", policy.KindWebservice, "conjur/seed-generation")
	fmt.Println("execute:", g.Allowed(host, "execute", seeds))
	fmt.Println("read:", g.Allowed(host, "read", seeds))
	// Output:
	// new hosts: [myorg:host:follower-1]
	// execute: true
	// read: false
}

// A syntax or reference error names the line and column.
func ExampleParse() {
	_, err := policy.Parse("app.yml", []byte("- !host\n  id: web\n  restricted_to: 10.0.0.1/8\n"))
	fmt.Println(err)
	// Output:
	// Error at line 3, column 0 in app.yml : Invalid IP address or CIDR range '10.0.0.1/8': Value has bits set to right of mask. Did you mean '10.0.0.0/8'?
}
