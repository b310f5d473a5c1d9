package k8s

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sowerproject/sower/authn"
	"github.com/sowerproject/sower/authn/jwt"
)

// Workload is who presented a token, from its kubernetes.io claims.
type Workload struct {
	Namespace         string
	ServiceAccount    string
	ServiceAccountUID string
	Pod               string
	PodUID            string
}

// WorkloadFromClaims reads the workload of a projected, pod-bound
// service-account token. Tokens not bound to a pod (legacy secret tokens,
// TokenRequest tokens without a pod) are refused: sower checks that the pod
// still exists.
func WorkloadFromClaims(c *jwt.Claims) (Workload, error) {
	get := func(path string) (string, error) {
		v, ok := c.String(path)
		if !ok {
			return "", authn.Refuse(authn.ReasonMissingClaim, "service-account token has no %q claim (is it a projected, pod-bound token?)", path)
		}
		return v, nil
	}
	var w Workload
	var err error
	for _, f := range []struct {
		path string
		dst  *string
	}{
		{"kubernetes.io/namespace", &w.Namespace},
		{"kubernetes.io/serviceaccount/name", &w.ServiceAccount},
		{"kubernetes.io/serviceaccount/uid", &w.ServiceAccountUID},
		{"kubernetes.io/pod/name", &w.Pod},
		{"kubernetes.io/pod/uid", &w.PodUID},
	} {
		if *f.dst, err = get(f.path); err != nil {
			return Workload{}, err
		}
	}
	// The apiserver writes sub from the same service account; a token whose
	// sub disagrees was not written by it.
	if want := "system:serviceaccount:" + w.Namespace + ":" + w.ServiceAccount; c.Subject != want {
		return Workload{}, authn.Refuse(authn.ReasonClaimMismatch, "service-account token sub %q does not match its kubernetes.io claims (%s)", c.Subject, want)
	}
	return w, nil
}

// Controllers are the controllers the pod was shown to belong to, on the
// way to the object its host names; each is empty when not on that way.
type Controllers struct {
	ReplicaSet            string
	Deployment            string
	StatefulSet           string
	ReplicationController string
	DeploymentConfig      string
}

// Resolver reads, from the Kubernetes API, the pod a token is bound to, the
// objects a host names and the owner chain between them. It needs only get
// on pods, serviceaccounts, replicasets, deployments, statefulsets,
// replicationcontrollers and (OpenShift) apps.openshift.io deploymentconfigs.
type Resolver struct {
	Client API
}

// Verify checks through the API that the workload is one the identity
// admits, as Conjur does: the pod exists with the token's uid and service
// account, every object the identity names exists (a missing one refuses the
// login), and the pod belongs to it by the controller owner references, each
// object on the way read and its uid checked against the reference. It
// returns the controllers found.
func (r Resolver) Verify(ctx context.Context, w Workload, id AppIdentity) (Controllers, error) {
	var c Controllers
	pod, err := r.pod(ctx, w)
	if err != nil {
		return c, err
	}
	for _, s := range resourceSpecs {
		name, ok := id.Constraints[s.resource]
		if !ok || s.verify == nil {
			continue
		}
		if err := s.verify(ctx, r, pod, w, name, &c); err != nil {
			return c, err
		}
	}
	return c, nil
}

// pod reads the workload's pod: it must still exist with the token's pod
// uid (a pod replaced under the same name is refused, which Conjur does not
// check) and run as the token's service account.
func (r Resolver) pod(ctx context.Context, w Workload) (*object, error) {
	pod, err := r.get(ctx, "", w.Namespace, "pods", w.Pod, "pod %s/%s", w.Namespace, w.Pod)
	if err != nil {
		return nil, err
	}
	if pod.Metadata.UID != w.PodUID {
		return nil, authn.Refuse(authn.ReasonWorkloadMismatch, "pod %s/%s has uid %s, the token was issued for uid %s (pod was replaced)", w.Namespace, w.Pod, pod.Metadata.UID, w.PodUID)
	}
	if sa := pod.Spec.ServiceAccountName; sa != "" && sa != w.ServiceAccount {
		return nil, authn.Refuse(authn.ReasonWorkloadMismatch, "pod %s/%s runs as service account %q, the token is for %q", w.Namespace, w.Pod, sa, w.ServiceAccount)
	}
	return pod, nil
}

// verifyFunc checks that pod belongs to the object of one resource named
// name, reading what it needs, and records the controllers it passes.
type verifyFunc func(ctx context.Context, r Resolver, pod *object, w Workload, name string, c *Controllers) error

// verifyPod: the pod read is the token's; the host must name it.
func verifyPod(_ context.Context, _ Resolver, pod *object, _ Workload, name string, _ *Controllers) error {
	if pod.Metadata.Name != name {
		return authn.Refuse(authn.ReasonWorkloadMismatch, "host requires pod %q, the token is for pod %s/%s", name, pod.Metadata.Namespace, pod.Metadata.Name)
	}
	return nil
}

// verifyServiceAccount reads the service account: it must exist, be the one
// the token was issued for (same uid, so one deleted and created again
// under the same name does not accept old tokens), and be the pod's.
func verifyServiceAccount(ctx context.Context, r Resolver, pod *object, w Workload, name string, _ *Controllers) error {
	ns := pod.Metadata.Namespace
	sa, err := r.get(ctx, "", ns, "serviceaccounts", name, "service account %s/%s", ns, name)
	if err != nil {
		return err
	}
	if sa.Metadata.UID != w.ServiceAccountUID {
		return authn.Refuse(authn.ReasonWorkloadMismatch, "service account %s/%s has uid %s, the token was issued for uid %s (service account was replaced)", ns, name, sa.Metadata.UID, w.ServiceAccountUID)
	}
	if got := pod.Spec.ServiceAccountName; got != name {
		return authn.Refuse(authn.ReasonWorkloadMismatch, "host requires service account %q, but pod %s/%s runs as %q", name, ns, pod.Metadata.Name, got)
	}
	return nil
}

// verifyDeployment: Pod → ReplicaSet → the named Deployment.
func verifyDeployment(ctx context.Context, r Resolver, pod *object, _ Workload, name string, c *Controllers) error {
	ns := pod.Metadata.Namespace
	d, err := r.get(ctx, "apps", ns, "deployments", name, "deployment %s/%s", ns, name)
	if err != nil {
		return err
	}
	ref, err := controllerRef(pod.Metadata, "pod", "ReplicaSet", "deployment", name)
	if err != nil {
		return err
	}
	rs, err := r.get(ctx, "apps", ns, "replicasets", ref.Name, "replica set %s/%s (owner of pod %s)", ns, ref.Name, pod.Metadata.Name)
	if err != nil {
		return err
	}
	if err := sameUID("replica set", rs.Metadata, ref); err != nil {
		return err
	}
	c.ReplicaSet = rs.Metadata.Name
	top, err := controllerRef(rs.Metadata, "replica set", "Deployment", "deployment", name)
	if err != nil {
		return err
	}
	if err := isNamed("deployment", d.Metadata, top); err != nil {
		return err
	}
	c.Deployment = d.Metadata.Name
	return nil
}

// verifyStatefulSet: Pod → the named StatefulSet.
func verifyStatefulSet(ctx context.Context, r Resolver, pod *object, _ Workload, name string, c *Controllers) error {
	ns := pod.Metadata.Namespace
	s, err := r.get(ctx, "apps", ns, "statefulsets", name, "stateful set %s/%s", ns, name)
	if err != nil {
		return err
	}
	ref, err := controllerRef(pod.Metadata, "pod", "StatefulSet", "stateful set", name)
	if err != nil {
		return err
	}
	if err := isNamed("stateful set", s.Metadata, ref); err != nil {
		return err
	}
	c.StatefulSet = s.Metadata.Name
	return nil
}

// verifyDeploymentConfig: Pod → ReplicationController → the named
// DeploymentConfig, read from OpenShift's apps.openshift.io/v1 API.
func verifyDeploymentConfig(ctx context.Context, r Resolver, pod *object, _ Workload, name string, c *Controllers) error {
	ns := pod.Metadata.Namespace
	dc, err := r.get(ctx, "apps.openshift.io", ns, "deploymentconfigs", name, "deployment config %s/%s", ns, name)
	if err != nil {
		return err
	}
	if dc.Kind != "DeploymentConfig" || dc.Metadata.Name != name {
		return authn.Refuse(authn.ReasonUnavailable, "deployment config %s/%s: the API answered something else (kind %q, name %q)", ns, name, dc.Kind, dc.Metadata.Name)
	}
	ref, err := controllerRef(pod.Metadata, "pod", "ReplicationController", "deployment config", name)
	if err != nil {
		return err
	}
	rc, err := r.get(ctx, "", ns, "replicationcontrollers", ref.Name, "replication controller %s/%s (owner of pod %s)", ns, ref.Name, pod.Metadata.Name)
	if err != nil {
		return err
	}
	if err := sameUID("replication controller", rc.Metadata, ref); err != nil {
		return err
	}
	c.ReplicationController = rc.Metadata.Name
	top, err := controllerRef(rc.Metadata, "replication controller", "DeploymentConfig", "deployment config", name)
	if err != nil {
		return err
	}
	if err := isNamed("deployment config", dc.Metadata, top); err != nil {
		return err
	}
	c.DeploymentConfig = dc.Metadata.Name
	return nil
}

// get reads one object by name (group "" is the core API), refusing as
// apiRefusal says when the API does not answer it; format and args name
// the object in refusals.
func (r Resolver) get(ctx context.Context, group, ns, resource, name, format string, args ...any) (*object, error) {
	raw, err := r.Client.Get(ctx, objectPath(group, ns, resource, name))
	if err != nil {
		return nil, apiRefusal(err, format, args...)
	}
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, authn.Refuse(authn.ReasonUnavailable, "%s: the Kubernetes API's answer is not an object: %v", fmt.Sprintf(format, args...), err)
	}
	return &o, nil
}

// controllerRef returns obj's controller owner reference, which must be of
// kind; otherwise obj cannot belong to the named object.
func controllerRef(obj objectMeta, what, kind, named, name string) (*ownerRef, error) {
	ref := obj.controller()
	switch {
	case ref == nil:
		return nil, authn.Refuse(authn.ReasonWorkloadMismatch, "host requires %s %q, but %s %s/%s has no controller", named, name, what, obj.Namespace, obj.Name)
	case ref.Kind != kind:
		return nil, authn.Refuse(authn.ReasonWorkloadMismatch, "host requires %s %q, but %s %s/%s is controlled by %s %q, not a %s", named, name, what, obj.Namespace, obj.Name, ref.Kind, ref.Name, kind)
	}
	return ref, nil
}

// sameUID checks that an object read by its dependent's reference is the
// object referenced, not one created since under the same name.
func sameUID(what string, obj objectMeta, ref *ownerRef) error {
	if obj.UID != ref.UID {
		return authn.Refuse(authn.ReasonWorkloadMismatch, "%s %s/%s has uid %s, its dependent references %s", what, obj.Namespace, obj.Name, obj.UID, ref.UID)
	}
	return nil
}

// isNamed checks that the end of the owner chain is the named object (read
// by its name) by name and uid.
func isNamed(what string, named objectMeta, ref *ownerRef) error {
	if ref.Name != named.Name || ref.UID != named.UID {
		return authn.Refuse(authn.ReasonWorkloadMismatch, "the pod belongs to %s %q (uid %s), the host names %s/%s (uid %s)", what, ref.Name, ref.UID, named.Namespace, named.Name, named.UID)
	}
	return nil
}

// apiRefusal turns a Kubernetes API error into a refusal: a missing object
// is a workload mismatch, anything else means the API could not answer.
func apiRefusal(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if IsNotFound(err) {
		return authn.Refuse(authn.ReasonWorkloadMismatch, "%s does not exist", what)
	}
	return authn.Refuse(authn.ReasonUnavailable, "read %s from the Kubernetes API: %w", what, err)
}
