package seed

import "errors"

var (
	// ErrForbidden: the caller lacks execute on the seed-generation webservice.
	ErrForbidden = errors.New("seed: forbidden")
	// ErrHostname: a requested host name breaks a policy constraint.
	ErrHostname = errors.New("seed: host name not allowed")
	// ErrNotClusterMember: a Standby seed was asked for a host outside the cluster's layer.
	ErrNotClusterMember = errors.New("seed: host is not a member of the cluster")
	// ErrInvalidRequest: the request is malformed (no names, bad recipient, ...).
	ErrInvalidRequest = errors.New("seed: invalid request")
	// ErrPlainDisabled: an unsealed seed was asked for but the server does not allow them.
	ErrPlainDisabled = errors.New("seed: unsealed seeds are disabled")
	// ErrNotFound: no seed with that id.
	ErrNotFound = errors.New("seed: no such seed")
	// ErrBusy: more seed requests wait for a core than Config.MaxWaiting;
	// the caller should try again shortly (503 with Retry-After).
	ErrBusy = errors.New("seed: too many seed requests waiting")
)
