// Package k8s authenticates Kubernetes workloads by their service-account
// tokens and maps them to Conjur hosts, as Conjur's Kubernetes authenticator
// does.
//
// Inputs: a projected, pod-bound service-account token (verified by an
// authn/jwt Authenticator), the host the client names (or the one
// token-app-property gives), the host's annotations and its permission from
// the policy (through Hosts), and the Kubernetes API (API: single objects
// read by name as JSON, decoded into the few fields the checks need; Client
// does it over HTTPS without client-go) for the pod's owner chain. Output: the authenticated host id, or a refusal whose
// reason says which check failed.
//
// A host states which workloads it stands for in one of two ways.
//
// In its id, wherever it is declared in the policy: as Conjur, the last three
// parts of the id are one of six forms (host/conjur/authn-k8s/<id>/apps/shop/*/*,
// host/team-a/shop/deployment/web). Its authenticate permission on the
// webservice is what admits it.
//
//	<namespace>/*/*                        any workload in the namespace
//	<namespace>/deployment/<name>          pods of a Deployment
//	<namespace>/deployment_config/<name>   pods of an OpenShift DeploymentConfig
//	<namespace>/stateful_set/<name>        pods of a StatefulSet
//	<namespace>/pod/<name>                 one pod
//	<namespace>/service_account/<name>     pods running as a service account
//
// Or, whatever its id, in annotations (Conjur's annotation form), which win
// when present: authn-k8s/namespace (required), and optionally one of
// authn-k8s/deployment, authn-k8s/deployment-config, authn-k8s/stateful-set,
// plus authn-k8s/service-account and authn-k8s/pod. Each may also be written
// authn-k8s/<service-id>/<name>, which takes precedence for that service.
// authn-k8s/authentication-container-name is accepted and ignored (it
// matters only to the certificate-injection flow that sower does not have).
//
// The namespace, pod and service account come from the token's
// "kubernetes.io" claims. When a Kubernetes client is configured, the pod is
// read from the API and must still exist with the token's pod uid; then, as
// Conjur does, every object the host names (service account, deployment,
// stateful set, deployment config) is read and must exist, and the pod must
// belong to it through its controller owner references (Pod → ReplicaSet →
// Deployment, Pod → StatefulSet, Pod → ReplicationController →
// DeploymentConfig), each object read and its uid checked against the
// reference, the named object matched by name and uid.
package k8s
