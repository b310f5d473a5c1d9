// Package repo reads a policy repository: a folder tree that mirrors the
// policy tree, as operators keep Conjur policies in Git. It turns the tree
// into the ordered list of loads that brings the server in line with it;
// policy.Graph.PlanAll turns that list into one change set, empty when the
// server already matches.
//
// The layout (see examples/policy-repo):
//
//	policies.yml hosts.yml ...   the root policy
//	conjur/                      policy "conjur", declared in ../policies.yml
//	  policies.yml               declares conjur/seed-generation, ...
//	  seed-generation/body.yml   policy "conjur/seed-generation"
//	  grants.yml
//	grants/*.yml, permits/*.yml  more grants and permits of the folder's policy
//
// For each folder, in this order:
//
//  1. The first group, policies.yml, groups.yml, layers.yml, hosts.yml,
//     webservice.yml and body.yml, loaded together as one text with
//     replace: what the policy held before and the files no longer declare
//     is deleted. (One text, because loading each file with replace would
//     delete what the previous file declared.)
//  2. The sub-folders, in name order, each into its own policy.
//  3. The second group, appended once the sub-policies exist: variables.yml,
//     grants.yml, permits.yml, then the files of grants/ and permits/.
//
// Any other .yml or .yaml file is an error rather than silently skipped;
// other files (README.md) and hidden folders (.git) are ignored.
package repo
