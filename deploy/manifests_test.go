package deploy_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kube is deploy/kubernetes.
const kube = "kubernetes"

// renderings are what the tests render: the base alone, each overlay, and
// production with the HPA component instead of KEDA (an overlay the test
// writes, as an operator would).
func renderings(t *testing.T) map[string]string {
	t.Helper()
	// kustomize takes no absolute paths between kustomizations: the
	// operator's overlay goes into a copy of the tree.
	root := t.TempDir()
	if err := os.CopyFS(root, os.DirFS(kube)); err != nil {
		t.Fatal(err)
	}
	hpa := filepath.Join(root, "overlays", "production-hpa")
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../production]\ncomponents: [../../components/sender-hpa]\n"
	if err := os.MkdirAll(hpa, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hpa, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	at := func(p string) string { return filepath.Join(root, p) }
	return map[string]string{
		"base": at("base"), "dev": at("overlays/dev"), "production": at("overlays/production"), "production+sender-hpa": hpa,
	}
}

// render runs kustomize (as kubectl apply -k does) on dir and returns its
// documents.
func render(t *testing.T, dir string) [][]byte {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	var docs [][]byte
	for _, r := range m.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	return docs
}

// strictDecoder decodes the Kubernetes kinds the manifests may hold,
// refusing unknown and duplicate fields.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme, autoscalingv2.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true})
}

// manifest is one rendered document, decoded.
type manifest struct {
	kind, name string
	obj        runtime.Object // nil for KEDA's kinds
	raw        map[string]any
}

// decodeAll decodes docs strictly: Kubernetes kinds into k8s.io/api's
// types, KEDA's against its CRD's schema. Any other kind fails the test.
func decodeAll(t *testing.T, what string, docs [][]byte) []manifest {
	t.Helper()
	ms, errs := decodeDocs(t, docs)
	for _, err := range errs {
		t.Errorf("%s: %v", what, err)
	}
	return ms
}

// decodeDocs decodes what it can of docs and returns an error per document
// that does not decode strictly.
func decodeDocs(t *testing.T, docs [][]byte) ([]manifest, []error) {
	t.Helper()
	dec := strictDecoder(t)
	keda := kedaSchemas(t)
	var out []manifest
	var errs []error
	for _, d := range docs {
		var raw map[string]any
		if err := yaml.Unmarshal(d, &raw); err != nil {
			errs = append(errs, err)
			continue
		}
		kind, _ := raw["kind"].(string)
		meta, _ := raw["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		apiVersion, _ := raw["apiVersion"].(string)
		m := manifest{kind: kind, name: name, raw: raw}
		if s, ok := keda[apiVersion+"/"+kind]; ok {
			if err := s.validate(raw); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", kind, name, err))
				continue
			}
		} else {
			obj, _, err := dec.Decode(d, nil, nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", kind, name, err))
				continue
			}
			m.obj = obj
		}
		out = append(out, m)
	}
	return out, errs
}

// Every document of the base and of each overlay decodes strictly into
// its kind's type: a misspelt field, a field at the wrong level or a kind
// no cluster knows fails here rather than at kubectl apply.
func TestManifestsDecodeStrictly(t *testing.T) {
	for name, dir := range renderings(t) {
		t.Run(name, func(t *testing.T) {
			ms := decodeAll(t, name, render(t, dir))
			kinds := map[string]int{}
			for _, m := range ms {
				kinds[m.kind]++
			}
			if kinds["Deployment"] != 4 || kinds["StatefulSet"] != 1 || kinds["PodDisruptionBudget"] != 4 || kinds["NetworkPolicy"] < 4 {
				t.Errorf("kinds %v: want 4 Deployments (ingest, router, sender, redis), the NATS StatefulSet, 4 PodDisruptionBudgets and the NetworkPolicies", kinds)
			}
			scalers := kinds["ScaledObject"] + kinds["HorizontalPodAutoscaler"]
			switch name {
			case "dev":
				if scalers != 0 {
					t.Errorf("dev scales senders (%v): it runs a fixed count, without KEDA", kinds)
				}
			case "production+sender-hpa":
				if kinds["HorizontalPodAutoscaler"] != 1 || kinds["ScaledObject"] != 0 {
					t.Errorf("kinds %v: want the HPA instead of the ScaledObject", kinds)
				}
			default:
				if kinds["ScaledObject"] != 1 || kinds["HorizontalPodAutoscaler"] != 0 {
					t.Errorf("kinds %v: want one ScaledObject", kinds)
				}
			}
		})
	}
}

// The strict decoding does catch mistakes: a field at the wrong level, an
// unknown kind, a KEDA trigger field KEDA does not have.
func TestStrictDecodingRefuses(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 80, targetport: 8080}]}\n",
		"apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n",
		"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: sender}\n  minReplicas: 2\n  triggers: [{type: cpu, metadata: {}}]\n",
		"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  triggers: [{type: cpu, metadata: {}}]\n",
		"apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: sender}\n  pollingInterval: often\n  triggers: [{type: cpu, metadata: {}}]\n",
	} {
		if _, errs := decodeDocs(t, [][]byte{[]byte(doc)}); len(errs) != 1 {
			t.Errorf("accepted:\n%s", doc)
		} else {
			t.Logf("refused: %v", errs[0])
		}
	}
}

// kedaSchema is the OpenAPI v3 schema of one of KEDA's kinds, from its CRD.
// KEDA's Go module (github.com/kedacore/keda/v2/apis/...) would decode into
// its types, but it brings controller-runtime and client-go with it: over
// six minutes of build on two cores, and v2.20.2's tidy picked versions
// that do not compile together. The CRD is what the API server validates
// with anyway; testdata/keda holds KEDA v2.20.2's, copied from that module.
type kedaSchema struct {
	schema map[string]any
}

// kedaSchemas reads the CRDs in testdata/keda, by "group/version/Kind".
func kedaSchemas(t *testing.T) map[string]kedaSchema {
	t.Helper()
	files, err := filepath.Glob("testdata/keda/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("testdata/keda: %v", err)
	}
	out := map[string]kedaSchema{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			Spec struct {
				Group string
				Names struct{ Kind string }
				// Versions' schemas, by name.
				Versions []struct {
					Name   string
					Served bool
					Schema struct {
						OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
					}
				}
			}
		}
		if err := yaml.Unmarshal(b, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Served {
				out[crd.Spec.Group+"/"+v.Name+"/"+crd.Spec.Names.Kind] = kedaSchema{v.Schema.OpenAPIV3Schema}
			}
		}
	}
	return out
}

func (s kedaSchema) validate(doc map[string]any) error {
	var errs []error
	// metadata is the API server's ObjectMeta, not the CRD's to describe.
	body := maps(doc)
	delete(body, "metadata")
	checkSchema(s.schema, body, "", &errs)
	return errors.Join(errs...)
}

func maps(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// checkSchema checks v against the structural schema s as the API server
// would: types, required fields, enums, and no field the schema lacks
// (unless it preserves unknown fields or allows additional properties).
func checkSchema(s map[string]any, v any, at string, errs *[]error) {
	fail := func(format string, args ...any) {
		*errs = append(*errs, fmt.Errorf("%s: %s", strings.TrimPrefix(at, "."), fmt.Sprintf(format, args...)))
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		fail("%v is not one of %v", v, enum)
	}
	if s["x-kubernetes-int-or-string"] == true {
		switch v.(type) {
		case string, float64, int64:
			return
		}
		fail("want an integer or a string, not %T", v)
		return
	}
	switch typ, _ := s["type"].(string); typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			fail("want an object, not %T", v)
			return
		}
		for _, r := range asList(s["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				fail("%s is required", r)
			}
		}
		props, _ := s["properties"].(map[string]any)
		addl, _ := s["additionalProperties"].(map[string]any)
		for k, fv := range obj {
			switch ps, ok := props[k].(map[string]any); {
			case ok:
				checkSchema(ps, fv, at+"."+k, errs)
			case addl != nil:
				checkSchema(addl, fv, at+"."+k, errs)
			case s["x-kubernetes-preserve-unknown-fields"] == true:
			default:
				fail("unknown field %q", k)
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			fail("want an array, not %T", v)
			return
		}
		items, _ := s["items"].(map[string]any)
		for i, iv := range arr {
			checkSchema(items, iv, fmt.Sprintf("%s[%d]", at, i), errs)
		}
	case "string":
		if _, ok := v.(string); !ok {
			fail("want a string, not %T", v)
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			fail("want an integer, not %v", v)
		}
	case "number":
		if _, ok := v.(float64); !ok {
			fail("want a number, not %T", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			fail("want true or false, not %T", v)
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}
