package k8s

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

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

// Controllers are the controllers found on a pod's owner chain; each is
// empty when the pod has no such controller.
type Controllers struct {
	ReplicaSet            string
	Deployment            string
	StatefulSet           string
	ReplicationController string
	DeploymentConfig      string
}

// Resolver reads pods and their owner chains from the Kubernetes API.
type Resolver struct {
	Client kubernetes.Interface
}

// CheckPod reads the workload's pod and checks that it still exists with the
// token's pod uid and service account. It returns the pod's controller owner
// reference, if any.
func (r Resolver) CheckPod(ctx context.Context, w Workload) (*metav1.OwnerReference, error) {
	pod, err := r.Client.CoreV1().Pods(w.Namespace).Get(ctx, w.Pod, metav1.GetOptions{})
	if err != nil {
		return nil, apiRefusal(err, "pod %s/%s", w.Namespace, w.Pod)
	}
	if string(pod.UID) != w.PodUID {
		return nil, authn.Refuse(authn.ReasonWorkloadMismatch, "pod %s/%s has uid %s, the token was issued for uid %s (pod was replaced)", w.Namespace, w.Pod, pod.UID, w.PodUID)
	}
	if sa := pod.Spec.ServiceAccountName; sa != "" && sa != w.ServiceAccount {
		return nil, authn.Refuse(authn.ReasonWorkloadMismatch, "pod %s/%s runs as service account %q, the token is for %q", w.Namespace, w.Pod, sa, w.ServiceAccount)
	}
	return metav1.GetControllerOf(pod), nil
}

// Controllers follows the pod's controller owner references. Every object on
// the chain is read, and its uid must be the one its dependent references.
func (r Resolver) Controllers(ctx context.Context, namespace string, owner *metav1.OwnerReference) (Controllers, error) {
	var c Controllers
	if owner == nil {
		return c, nil
	}
	check := func(kind, name string, got, want types.UID) error {
		if got != want {
			return authn.Refuse(authn.ReasonWorkloadMismatch, "%s %s/%s has uid %s, its dependent references %s", kind, namespace, name, got, want)
		}
		return nil
	}
	switch owner.Kind {
	case "ReplicaSet":
		rs, err := r.Client.AppsV1().ReplicaSets(namespace).Get(ctx, owner.Name, metav1.GetOptions{})
		if err != nil {
			return c, apiRefusal(err, "replica set %s/%s", namespace, owner.Name)
		}
		if err := check("replica set", rs.Name, rs.UID, owner.UID); err != nil {
			return c, err
		}
		c.ReplicaSet = rs.Name
		ref := metav1.GetControllerOf(rs)
		if ref == nil || ref.Kind != "Deployment" {
			return c, nil
		}
		d, err := r.Client.AppsV1().Deployments(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return c, apiRefusal(err, "deployment %s/%s", namespace, ref.Name)
		}
		if err := check("deployment", d.Name, d.UID, ref.UID); err != nil {
			return c, err
		}
		c.Deployment = d.Name
	case "StatefulSet":
		s, err := r.Client.AppsV1().StatefulSets(namespace).Get(ctx, owner.Name, metav1.GetOptions{})
		if err != nil {
			return c, apiRefusal(err, "stateful set %s/%s", namespace, owner.Name)
		}
		if err := check("stateful set", s.Name, s.UID, owner.UID); err != nil {
			return c, err
		}
		c.StatefulSet = s.Name
	case "ReplicationController":
		rc, err := r.Client.CoreV1().ReplicationControllers(namespace).Get(ctx, owner.Name, metav1.GetOptions{})
		if err != nil {
			return c, apiRefusal(err, "replication controller %s/%s", namespace, owner.Name)
		}
		if err := check("replication controller", rc.Name, rc.UID, owner.UID); err != nil {
			return c, err
		}
		c.ReplicationController = rc.Name
		// The DeploymentConfig is an OpenShift type client-go does not know;
		// the controller reference on the replication controller, read from
		// the API, names it.
		if ref := metav1.GetControllerOf(rc); ref != nil && ref.Kind == "DeploymentConfig" {
			c.DeploymentConfig = ref.Name
		}
	}
	return c, nil
}

// apiRefusal turns a Kubernetes API error into a refusal: a missing object
// is a workload mismatch, anything else means the API could not answer.
func apiRefusal(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if apierrors.IsNotFound(err) {
		return authn.Refuse(authn.ReasonWorkloadMismatch, "%s does not exist", what)
	}
	return authn.Refuse(authn.ReasonUnavailable, "read %s from the Kubernetes API: %w", what, err)
}
