package repo

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sowerproject/sower/policy"
)

const account = "myorg"

// exampleRepo is the repository shipped in examples/policy-repo.
func exampleRepo(t *testing.T) fstest.MapFS {
	t.Helper()
	root := filepath.Join("..", "..", "examples", "policy-repo")
	fsys := fstest.MapFS{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fsys[filepath.ToSlash(rel)] = &fstest.MapFile{Data: b}
		return nil
	})
	if err != nil {
		t.Fatalf("read the example repository: %v", err)
	}
	return fsys
}

func newGraph(t *testing.T) *policy.Graph {
	t.Helper()
	g := policy.NewGraph()
	cs, err := g.PlanAccount(account)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	return g
}

func sync(t *testing.T, g *policy.Graph, fsys fstest.MapFS) *policy.ChangeSet {
	t.Helper()
	loads, err := Loads(fsys, account)
	if err != nil {
		t.Fatalf("Loads: %v", err)
	}
	cs, err := g.PlanAll(loads)
	if err != nil {
		t.Fatalf("PlanAll: %v", err)
	}
	if err := g.Apply(cs); err != nil {
		t.Fatal(err)
	}
	return cs
}

func id(kind, name string) policy.ID { return policy.NewID(account, kind, name) }

func TestLoadOrder(t *testing.T) {
	t.Parallel()
	loads, err := Loads(exampleRepo(t), account)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range loads {
		names := l.Filename
		for _, f := range l.Files {
			names += " " + f.Name
		}
		got = append(got, l.Mode.String()+" "+l.Policy.Name+":"+strings.TrimSpace(names))
	}
	want := []string{
		"replace root:policies.yml groups.yml hosts.yml",
		"replace conjur:conjur/policies.yml",
		"replace conjur/authn-k8s:conjur/authn-k8s/policies.yml",
		"replace conjur/authn-k8s/production-cluster:conjur/authn-k8s/production-cluster/body.yml",
		"replace conjur/cluster:conjur/cluster/body.yml",
		"replace conjur/seed-generation:conjur/seed-generation/body.yml",
		"append conjur:conjur/grants.yml",
		"replace development:development/policies.yml development/layers.yml",
		"replace development/application-code:development/application-code/hosts.yml",
		"append development:development/variables.yml",
		"append development:development/grants.yml",
		"append development:development/permits.yml",
		"replace production:production/policies.yml production/layers.yml",
		"replace production/application-code:production/application-code/hosts.yml",
		"append production:production/variables.yml",
		"append production:production/grants.yml",
		"append production:production/permits.yml",
		"append root:grants/conjur-production.yml",
		"append root:permits/k8s-production-cluster.yml",
	}
	if !slices.Equal(got, want) {
		t.Errorf("loads:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSyncExample is the acceptance: the example repository syncs;
// a Follower granted conjur/seed-generation/consumers may execute the seed
// service and nothing else may; a second sync changes nothing.
func TestSyncExample(t *testing.T) {
	t.Parallel()
	g := newGraph(t)
	first := sync(t, g, exampleRepo(t))
	if first.Empty() {
		t.Fatal("the first sync changed nothing")
	}
	if !slices.Contains(first.NewRoles, id(policy.KindHost, "follower-dc1-01")) {
		t.Errorf("NewRoles %v lacks the Follower", first.NewRoles)
	}

	seeds := id(policy.KindWebservice, "conjur/seed-generation")
	k8s := id(policy.KindWebservice, "conjur/authn-k8s/production-cluster")
	apps := "conjur/authn-k8s/production-cluster/apps/"
	tests := map[string]struct {
		role      policy.ID
		privilege string
		resource  policy.ID
		want      bool
	}{
		"follower fetches seeds":            {id(policy.KindHost, "follower-dc1-01"), "execute", seeds, true},
		"k8s follower fetches seeds":        {id(policy.KindHost, apps+"conjur-followers/service_account/conjur-follower"), "execute", seeds, true},
		"application host may not":          {id(policy.KindHost, "production/application-code/api-01"), "execute", seeds, false},
		"cluster member may not":            {id(policy.KindHost, "conjur/cluster/production/leader-1.example.internal"), "execute", seeds, false},
		"namespace host authenticates":      {id(policy.KindHost, apps+"payments-batch/*/*"), "authenticate", k8s, true},
		"stateful set host authenticates":   {id(policy.KindHost, apps+"ledger/stateful_set/db"), "authenticate", k8s, true},
		"payments api reads prod secret":    {id(policy.KindHost, apps+"payments/deployment/api"), "read", id(policy.KindVariable, "production/database/password"), true},
		"dev host may not read prod secret": {id(policy.KindHost, "development/application-code/api-01"), "read", id(policy.KindVariable, "production/database/password"), false},
		"prod admins own prod secrets":      {id(policy.KindGroup, "production-admins"), "update", id(policy.KindVariable, "production/database/url"), true},
		"prod admins run the authenticator": {id(policy.KindGroup, "production-admins"), "update", id(policy.KindVariable, "conjur/authn-k8s/production-cluster/ca/key"), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := g.Allowed(tc.role, tc.privilege, tc.resource); got != tc.want {
				t.Errorf("Allowed(%s, %s, %s) = %v, want %v", tc.role, tc.privilege, tc.resource, got, tc.want)
			}
		})
	}
	cluster, ok := g.Resource(id(policy.KindPolicy, "conjur/cluster/production"))
	if !ok || len(cluster.Annotations) != 1 || cluster.Annotations[0].Name != "ttl" || cluster.Annotations[0].Value != "20" {
		t.Errorf("cluster policy = %+v, want a ttl annotation of 20", cluster)
	}

	if again := sync(t, g, exampleRepo(t)); !again.Empty() {
		t.Errorf("a second sync changes %d/%d/%d facts", len(again.Created), len(again.Updated), len(again.Deleted))
	}
}

// TestSyncRemovesWhatTheRepositoryDrops: deleting a host from hosts.yml
// deletes it on the next sync, with its grants, and nothing else.
func TestSyncRemovesWhatTheRepositoryDrops(t *testing.T) {
	t.Parallel()
	g := newGraph(t)
	fsys := exampleRepo(t)
	sync(t, g, fsys)
	fsys["production/application-code/hosts.yml"] = &fstest.MapFile{Data: []byte("- !host api-01\n")}
	fsys["production/grants.yml"] = &fstest.MapFile{Data: []byte("- !grant\n  role: !layer application-code\n  member: !host application-code/api-01\n")}
	cs := sync(t, g, fsys)
	worker := id(policy.KindHost, "production/application-code/worker-01")
	if !slices.Equal(cs.DeletedRoles, []policy.ID{worker}) {
		t.Errorf("DeletedRoles = %v, want [%s]", cs.DeletedRoles, worker)
	}
	if len(cs.Created) != 0 || len(cs.Updated) != 0 {
		t.Errorf("the sync also created %d and updated %d facts", len(cs.Created), len(cs.Updated))
	}
}

func TestLayoutErrors(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"policies.yml":      {Data: []byte("- !policy app\n")},
		"app/secrets.yml":   {Data: []byte("- !variable x\n")},
		"app/README.md":     {Data: []byte("notes")},
		".git/config":       {Data: []byte("")},
		"app/.hidden/x.yml": {Data: []byte("")},
	}
	_, err := Loads(fsys, account)
	if !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "app/secrets.yml") {
		t.Errorf("Loads = %v, want ErrLayout naming app/secrets.yml", err)
	}
}

// TestSyncErrorNamesTheFile: a bad reference in one file of a node's first
// group is reported in that file, at its line.
func TestSyncErrorNamesTheFile(t *testing.T) {
	t.Parallel()
	fsys := exampleRepo(t)
	fsys["production/layers.yml"] = &fstest.MapFile{Data: []byte("- !layer\n  id: application-code\n  owner: !group nobody\n")}
	loads, err := Loads(fsys, account)
	if err != nil {
		t.Fatal(err)
	}
	_, err = newGraph(t).PlanAll(loads)
	var perr *policy.Error
	if !errors.As(err, &perr) || perr.Filename != "production/layers.yml" || perr.Line != 3 {
		t.Errorf("PlanAll error = %v, want one in production/layers.yml at line 3", err)
	}
}
