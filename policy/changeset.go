package policy

// Mode is how a load treats what the policy already holds.
type Mode int

const (
	// Append adds what the text declares and changes nothing that exists
	// (Conjur's POST). Deletion statements (!delete, !deny, !revoke) are an
	// error.
	Append Mode = iota + 1
	// Update adds what the text declares, updates owners, annotations and
	// admin options of facts this policy loaded before, and applies the
	// text's deletion statements (Conjur's PATCH).
	Update
	// Replace is Update, and also deletes every fact the policy loaded
	// before that the new text no longer declares (Conjur's PUT).
	Replace
)

// String returns the mode's name: append, update or replace.
func (m Mode) String() string {
	switch m {
	case Append:
		return "append"
	case Update:
		return "update"
	case Replace:
		return "replace"
	}
	return "invalid"
}

// ChangeSet is what a load changes. Apply it as one transaction: put each
// fact of Created and Updated under its Key, delete each key of Deleted.
// Plan returns it without applying anything, so a dry run is a Plan whose
// ChangeSet is only reported.
type ChangeSet struct {
	// Policy is the policy the text was loaded into (the first load's, for
	// PlanAll).
	Policy ID
	Mode   Mode
	// Policies lists every policy loaded, in load order: the caller gives
	// each a new version.
	Policies []ID
	// Warnings are Conjur's warnings about the text (annotations named like
	// policy attributes); they do not stop the load.
	Warnings []string
	// Created are facts that did not exist.
	Created []Fact
	// Updated are facts whose key exists, with their new values.
	Updated []Fact
	// Deleted are facts that are removed, with the values they had,
	// including everything that goes with a deleted role or resource.
	Deleted []Fact
	// NewRoles are the users and hosts this load creates, in load order:
	// the caller issues their API keys (and reports them, as Conjur does).
	NewRoles []ID
	// DeletedRoles are the roles this load deletes: the caller removes
	// their credentials.
	DeletedRoles []ID
	// Revision is the Graph revision the plan was computed against.
	Revision uint64
}

// Empty reports whether the load changes nothing.
func (c *ChangeSet) Empty() bool {
	return len(c.Created) == 0 && len(c.Updated) == 0 && len(c.Deleted) == 0
}
