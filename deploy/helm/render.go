// Package helm renders the sower-follower chart with Helm's own Go SDK (no
// helm binary) and decodes the rendered manifests strictly into the
// Kubernetes API types, for the chart's tests (this folder) and the pod
// tests that run the rendered pods with podman (deploy/podtest). Only tests
// import it: Helm is never linked into the sower programs.
package helm

import (
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Release and Namespace are the release the tests render: the names
// docs/kubernetes.md uses.
const (
	Release   = "conjur-follower"
	Namespace = "conjur-followers"
)

// ChartDir is the chart's folder, found from this file so that any test
// package can render it.
func ChartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "sower-follower")
}

// Render loads the chart, coalesces and validates vals against
// values.schema.json as `helm install` does, and renders it as release
// Release into Namespace. It returns the rendered files by name.
func Render(vals map[string]any) (map[string]string, error) {
	ch, err := loader.Load(ChartDir())
	if err != nil {
		return nil, fmt.Errorf("load the chart %s: %w", ChartDir(), err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals,
		common.ReleaseOptions{Name: Release, Namespace: Namespace, IsInstall: true}, nil)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

// Object is one rendered object, decoded into its API type.
type Object struct {
	File string
	Kind string
	Obj  any
	Meta *metav1.ObjectMeta
}

// kinds maps apiVersion/kind to a new value of its Go type: a kind the
// chart renders and this table lacks fails decoding.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                              func() any { return &appsv1.Deployment{} },
	"v1/Service":                                      func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                               func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                                    func() any { return &corev1.ConfigMap{} },
	"policy/v1/PodDisruptionBudget":                   func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler":          func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":              func() any { return &networkingv1.NetworkPolicy{} },
	"rbac.authorization.k8s.io/v1/ClusterRole":        func() any { return &rbacv1.ClusterRole{} },
	"rbac.authorization.k8s.io/v1/ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
}

// DecodeStrict decodes a multi-document YAML manifest into API objects:
// duplicate keys, unknown fields and case-mismatched fields fail, as the
// API server's strict field validation would.
func DecodeStrict(file string, manifest []byte) ([]Object, error) {
	var out []Object
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(manifest), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i, err)
		}
		var tm metav1.TypeMeta
		if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i, err)
		}
		newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
		if !ok {
			return nil, fmt.Errorf("%s document %d: kind %s/%s is not in the decoder's table", file, i, tm.APIVersion, tm.Kind)
		}
		obj := newObj()
		strict, err := kjson.UnmarshalStrict(js, obj, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
		if err != nil {
			return nil, fmt.Errorf("%s document %d (%s): %w", file, i, tm.Kind, err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("%s document %d (%s): strict decoding: %v", file, i, tm.Kind, strict)
		}
		out = append(out, Object{File: file, Kind: tm.Kind, Obj: obj, Meta: metaOf(obj)})
	}
	return out, nil
}

// RenderObjects renders the chart and strictly decodes every manifest
// (NOTES.txt aside), in file name order.
func RenderObjects(vals map[string]any) ([]Object, error) {
	files, err := Render(vals)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for f := range files {
		if !strings.HasSuffix(f, "NOTES.txt") {
			names = append(names, f)
		}
	}
	slices.Sort(names)
	var objs []Object
	for _, f := range names {
		o, err := DecodeStrict(f, []byte(files[f]))
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	return objs, nil
}

// Find returns the first object of type T.
func Find[T any](objs []Object) (T, bool) {
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func metaOf(obj any) *metav1.ObjectMeta {
	if o, ok := obj.(interface{ GetObjectMeta() metav1.Object }); ok {
		if m, ok := o.GetObjectMeta().(*metav1.ObjectMeta); ok {
			return m
		}
	}
	return nil
}
