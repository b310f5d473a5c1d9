package k8s

import (
	"fmt"
	"sort"
	"strings"

	"github.com/sowerproject/sower/authn"
)

// Resource is a kind of Kubernetes resource a host can stand for, named as
// in host ids.
type Resource string

// The resources of the six host-id forms.
const (
	Namespace        Resource = "namespace" // the <namespace>/*/* form
	Deployment       Resource = "deployment"
	DeploymentConfig Resource = "deployment_config"
	StatefulSet      Resource = "stateful_set"
	Pod              Resource = "pod"
	ServiceAccount   Resource = "service_account"
)

// resourceSpec describes one resource: how hosts name it and where the
// workload's actual value comes from. The table is the whole mapping.
type resourceSpec struct {
	resource Resource
	// annotation is the name after "authn-k8s/" in the annotation form.
	annotation string
	// controller marks resources found through the pod's owner chain; a host
	// may name at most one.
	controller bool
	// actual returns the workload's value for this resource.
	actual func(w Workload, c Controllers) string
	// verify reads the named object from the Kubernetes API and checks that
	// the pod belongs to it (nil for the namespace, which the token gives).
	verify verifyFunc
}

var resourceSpecs = []resourceSpec{
	{resource: Namespace, annotation: "namespace", actual: func(w Workload, _ Controllers) string { return w.Namespace }},
	{resource: Deployment, annotation: "deployment", controller: true, verify: verifyDeployment, actual: func(_ Workload, c Controllers) string { return c.Deployment }},
	{resource: DeploymentConfig, annotation: "deployment-config", controller: true, verify: verifyDeploymentConfig, actual: func(_ Workload, c Controllers) string { return c.DeploymentConfig }},
	{resource: StatefulSet, annotation: "stateful-set", controller: true, verify: verifyStatefulSet, actual: func(_ Workload, c Controllers) string { return c.StatefulSet }},
	{resource: Pod, annotation: "pod", verify: verifyPod, actual: func(w Workload, _ Controllers) string { return w.Pod }},
	{resource: ServiceAccount, annotation: "service-account", verify: verifyServiceAccount, actual: func(w Workload, _ Controllers) string { return w.ServiceAccount }},
}

func specOf(r Resource) (resourceSpec, bool) {
	for _, s := range resourceSpecs {
		if s.resource == r {
			return s, true
		}
	}
	return resourceSpec{}, false
}

// containerNameAnnotation is permitted in the annotation form but is not a
// constraint.
const containerNameAnnotation = "authentication-container-name"

// AppIdentity is what a host requires of a workload: a namespace and, per
// resource, the name it must have.
type AppIdentity struct {
	Namespace string
	// Constraints maps a resource (never Namespace) to its required name.
	Constraints map[Resource]string
	// FromAnnotations says whether the identity came from annotations
	// rather than from the host id.
	FromAnnotations bool
}

// NeedsController reports whether checking the identity needs the pod's
// owner chain.
func (id AppIdentity) NeedsController() bool {
	for r := range id.Constraints {
		if s, _ := specOf(r); s.controller {
			return true
		}
	}
	return false
}

// String renders the identity for logs: "shop/deployment/web".
func (id AppIdentity) String() string {
	if len(id.Constraints) == 0 {
		return id.Namespace + "/*/*"
	}
	parts := make([]string, 0, len(id.Constraints))
	for r, n := range id.Constraints {
		parts = append(parts, string(r)+"/"+n)
	}
	sort.Strings(parts)
	return id.Namespace + "/" + strings.Join(parts, ",")
}

// ParseHostID reads the host-id form, as Conjur does: the last three parts
// of the host's id, wherever in the policy it is declared, are
// <namespace>/<resource>/<name> or <namespace>/*/*. So
// "host/conjur/authn-k8s/prod/apps/shop/deployment/web",
// "host/team-a/shop/deployment/web" and "host/shop/*/*" all name pods of
// namespace shop; what lets a host authenticate is its authenticate
// permission on the webservice, checked before this. hostID is a role login
// ("host/...").
func ParseHostID(hostID string) (AppIdentity, error) {
	parts := strings.Split(strings.TrimPrefix(hostID, "host/"), "/")
	if len(parts) < 3 {
		return AppIdentity{}, authn.Refuse(authn.ReasonInvalidHostID, "host %q has no authn-k8s annotations and its id does not end in <namespace>/<resource>/<name> or <namespace>/*/*", hostID)
	}
	parts = parts[len(parts)-3:]
	if parts[0] == "" || parts[0] == "*" {
		return AppIdentity{}, authn.Refuse(authn.ReasonInvalidHostID, "host %q: the part before <resource>/<name> must be a namespace, not %q", hostID, parts[0])
	}
	id := AppIdentity{Namespace: parts[0], Constraints: map[Resource]string{}}
	kind, name := parts[1], parts[2]
	if kind == "*" && name == "*" {
		return id, nil
	}
	spec, ok := specOf(Resource(kind))
	if !ok || spec.resource == Namespace {
		return AppIdentity{}, authn.Refuse(authn.ReasonInvalidHostID, "host %q: resource %q is not one of deployment, deployment_config, stateful_set, pod, service_account (or */* for the namespace)", hostID, kind)
	}
	if name == "" || name == "*" {
		return AppIdentity{}, authn.Refuse(authn.ReasonInvalidHostID, "host %q: the %s needs a name", hostID, kind)
	}
	id.Constraints[spec.resource] = name
	return id, nil
}

// IdentityFromAnnotations reads the annotation form. It returns ok=false
// when the host has no constraint annotation (so its id is used instead).
func IdentityFromAnnotations(serviceID string, annotations map[string]string) (id AppIdentity, ok bool, err error) {
	general, specific := "authn-k8s/", "authn-k8s/"+serviceID+"/"
	permitted := map[string]bool{containerNameAnnotation: true}
	for _, s := range resourceSpecs {
		permitted[s.annotation] = true
	}
	// Unknown names at either level are refused, as Conjur does, so that a
	// typo does not silently widen a host.
	for name := range annotations {
		for _, prefix := range []string{specific, general} {
			rest, found := strings.CutPrefix(name, prefix)
			if !found || strings.Contains(rest, "/") {
				continue
			}
			if !permitted[rest] {
				return AppIdentity{}, false, authn.Refuse(authn.ReasonInvalidHostID, "annotation %q: %q is not a supported constraint (namespace, deployment, deployment-config, stateful-set, pod, service-account)", name, rest)
			}
		}
	}
	id = AppIdentity{Constraints: map[Resource]string{}, FromAnnotations: true}
	for _, s := range resourceSpecs {
		v, found := annotations[specific+s.annotation]
		if !found {
			v, found = annotations[general+s.annotation]
		}
		if !found {
			continue
		}
		ok = true
		if v == "" {
			return AppIdentity{}, true, authn.Refuse(authn.ReasonInvalidHostID, "annotation authn-k8s/%s is empty", s.annotation)
		}
		if s.resource == Namespace {
			id.Namespace = v
		} else {
			id.Constraints[s.resource] = v
		}
	}
	if !ok {
		return AppIdentity{}, false, nil
	}
	if id.Namespace == "" {
		return AppIdentity{}, true, authn.Refuse(authn.ReasonInvalidHostID, "authn-k8s annotations lack authn-k8s/namespace, which is required")
	}
	var controllers []string
	for r := range id.Constraints {
		if s, _ := specOf(r); s.controller {
			controllers = append(controllers, s.annotation)
		}
	}
	if len(controllers) > 1 {
		sort.Strings(controllers)
		return AppIdentity{}, true, authn.Refuse(authn.ReasonInvalidHostID, "authn-k8s annotations name %s; a host can stand for only one controller", strings.Join(controllers, " and "))
	}
	return id, true, nil
}

// ApplicationIdentity returns what a host requires: from its annotations when
// it has authn-k8s constraint annotations, otherwise from its id.
func ApplicationIdentity(serviceID, hostID string, annotations map[string]string) (AppIdentity, error) {
	id, ok, err := IdentityFromAnnotations(serviceID, annotations)
	if err != nil || ok {
		return id, err
	}
	return ParseHostID(hostID)
}

// Check compares the identity with the workload and its controllers and
// returns a workload_mismatch refusal naming the first difference.
func (id AppIdentity) Check(w Workload, c Controllers) error {
	for _, s := range resourceSpecs {
		want := id.Namespace
		if s.resource != Namespace {
			var ok bool
			if want, ok = id.Constraints[s.resource]; !ok {
				continue
			}
		}
		if got := s.actual(w, c); got != want {
			if got == "" {
				return authn.Refuse(authn.ReasonWorkloadMismatch, "host requires %s %q, but pod %s/%s has no %s", s.resource, want, w.Namespace, w.Pod, s.resource)
			}
			return authn.Refuse(authn.ReasonWorkloadMismatch, "host requires %s %q, but pod %s/%s has %q", s.resource, want, w.Namespace, w.Pod, got)
		}
	}
	return nil
}

// String for Workload, for logs.
func (w Workload) String() string {
	return fmt.Sprintf("%s/pod/%s (service account %s)", w.Namespace, w.Pod, w.ServiceAccount)
}
