// Package policy implements Conjur's policy language and the permission model
// it describes, as a pure engine: it parses and resolves policy text, plans a
// load against the facts already stored, and answers permission checks from
// those facts. It knows nothing of etcd, gRPC or HTTP; the caller stores the
// facts and feeds them back.
//
// The pieces, in the order a policy load uses them:
//
//   - Parse reads policy YAML (!user, !host, !group, !layer, !policy,
//     !variable, !webservice, !host-factory, !grant, !permit, !deny, !revoke,
//     !delete …) into a Document. Errors carry Conjur's line and column.
//     Document.Dump writes the canonical form back.
//   - Resolve turns a Document into flat, dependency-ordered records with fully
//     qualified ids and owners, exactly as Conjur's resolver does: ids relative
//     to the enclosing policy, "/" for absolute references, ".." to climb, and
//     users named alice@dev-db inside policy dev/db.
//   - Graph holds the facts in memory and answers Allowed(role, privilege,
//     resource), role memberships, permitted roles and resource listings.
//     ChangeSets are applied to it incrementally.
//   - Graph.Plan parses, resolves and compares a load with the facts the
//     graph holds, and returns a ChangeSet (created, updated and deleted
//     facts, and the users and hosts that need API keys) for one of the three
//     load modes: Append (POST), Update (PATCH) and Replace (PUT). A dry run
//     is a Plan that is not applied. Graph.PlanAll plans a sequence of loads
//     (a policy repository sync, see package policy/repo) as one net
//     ChangeSet.
//
// # Facts and storage
//
// The permission model is five kinds of fact, the same rows Conjur keeps in
// its database: Role, Resource (with its owner), Membership (with the admin
// option and the ownership flag), Permission and Annotation. Every fact
// records the policy whose load created it (PolicyID); a Replace load deletes
// the facts its policy created before and no longer declares.
//
// Each fact has a stable storage key (Fact.Key, see key.go for the layout)
// and a JSON value (MarshalFact, UnmarshalFact). A ChangeSet is meant to be
// written as one transaction: put every fact of Created and Updated under its
// key, delete the key of every fact of Deleted.
//
// A typical load, once the caller has checked that its client may load
// (create on the policy to append, update to update or replace):
//
//	cs, err := graph.Plan(policy.LoadRequest{
//		Policy: policy.NewID("myorg", policy.KindPolicy, "app"),
//		Mode:   policy.Replace, Filename: "app.yml", Text: text,
//	})
//	// errors.Is(err, policy.ErrInvalid): 422 with err's message.
//	// Store cs in one etcd transaction, then:
//	err = graph.Apply(cs)
//
// See docs/policy.md for the language, the load modes and the storage
// layout.
package policy
