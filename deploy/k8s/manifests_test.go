package k8s

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// The namespace every object of the shop lives in.
const namespace = "shop"

// exampleDir holds manifests that `kubectl apply -f deploy/k8s/` does not
// apply (it does not descend into directories): the placeholder Secrets and
// the Ingress. The tests read them too.
const exampleDir = "example"

// typeKey is an apiVersion and kind.
type typeKey struct{ apiVersion, kind string }

// kinds are the kinds a manifest may hold, each with its Go type. A document
// of any other kind fails the tests: add its type here first.
var kinds = map[typeKey]func() metav1.Object{
	{"v1", "Namespace"}:                       func() metav1.Object { return new(corev1.Namespace) },
	{"v1", "Service"}:                         func() metav1.Object { return new(corev1.Service) },
	{"v1", "Secret"}:                          func() metav1.Object { return new(corev1.Secret) },
	{"v1", "ConfigMap"}:                       func() metav1.Object { return new(corev1.ConfigMap) },
	{"apps/v1", "Deployment"}:                 func() metav1.Object { return new(appsv1.Deployment) },
	{"networking.k8s.io/v1", "Ingress"}:       func() metav1.Object { return new(networkingv1.Ingress) },
	{"networking.k8s.io/v1", "NetworkPolicy"}: func() metav1.Object { return new(networkingv1.NetworkPolicy) },
	{"policy/v1", "PodDisruptionBudget"}:      func() metav1.Object { return new(policyv1.PodDisruptionBudget) },
}

// A manifest is one document of a manifest file, decoded.
type manifest struct {
	source  string // file path and document number, for messages
	example bool   // under exampleDir
	kind    string
	obj     metav1.Object
}

func (m manifest) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", m.kind, m.obj.GetNamespace(), m.obj.GetName(), m.source)
}

// docSeparator matches the lines that separate YAML documents in a file.
var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// decodeDocument decodes one YAML document strictly into the Go type of its
// kind: a duplicate key, an unknown field (a typo, or a field of another
// version), a key in the wrong case or a value of the wrong type is an error,
// as it is for `kubectl apply --validate=strict`. A document with nothing
// but comments gives nil, "", nil.
func decodeDocument(doc []byte) (obj metav1.Object, kind string, err error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, "", err
	}
	if js = bytes.TrimSpace(js); bytes.Equal(js, []byte("null")) {
		return nil, "", nil
	}
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &tm); err != nil {
		return nil, "", fmt.Errorf("not a Kubernetes object: %w", err)
	}
	newObj, ok := kinds[typeKey{tm.APIVersion, tm.Kind}]
	if !ok {
		return nil, "", fmt.Errorf("apiVersion %q, kind %q: not a kind these tests know (add it to kinds)", tm.APIVersion, tm.Kind)
	}
	obj = newObj()
	strictErrs, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return nil, "", err
	}
	if err := errors.Join(strictErrs...); err != nil {
		return nil, "", err
	}
	if obj.GetName() == "" {
		return nil, "", errors.New("no metadata.name")
	}
	return obj, tm.Kind, nil
}

// isManifest reports whether kubectl apply -f would read the file at path.
func isManifest(path string) bool {
	switch filepath.Ext(path) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

var loaded struct {
	once      sync.Once
	manifests []manifest
	err       error
}

// loadManifests reads and decodes every manifest under this directory, once.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	loaded.once.Do(func() { loaded.manifests, loaded.err = readManifests(".") })
	if loaded.err != nil {
		t.Fatal(loaded.err)
	}
	return loaded.manifests
}

func readManifests(root string) ([]manifest, error) {
	var out []manifest
	var errs []error
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !isManifest(path) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		example := strings.HasPrefix(filepath.ToSlash(path), exampleDir+"/")
		for i, doc := range docSeparator.Split(string(data), -1) {
			source := fmt.Sprintf("%s, document %d", path, i+1)
			obj, kind, err := decodeDocument([]byte(doc))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", source, err))
				continue
			}
			if obj == nil {
				continue
			}
			out = append(out, manifest{source: source, example: example, kind: kind, obj: obj})
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no manifests under %s", root))
	}
	return out, errors.Join(errs...)
}

// TestManifestsDecodeStrictly reads every manifest: loadManifests fails on
// any document that does not decode strictly.
func TestManifestsDecodeStrictly(t *testing.T) {
	ms := loadManifests(t)
	var applied []string
	for _, m := range ms {
		if !m.example {
			applied = append(applied, m.kind+"/"+m.obj.GetName())
		}
	}
	t.Logf("%d objects, applied by kubectl apply -f deploy/k8s/: %s", len(ms), strings.Join(applied, ", "))
	for _, want := range []string{"Namespace/shop", "Deployment/orders", "Deployment/payments", "Service/orders", "Service/payments"} {
		if !slices.Contains(applied, want) {
			t.Errorf("no %s among the applied manifests", want)
		}
	}
}

// TestDecoderIsStrict makes sure decodeDocument rejects what it should, so
// that the test above means something.
func TestDecoderIsStrict(t *testing.T) {
	const valid = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  replicas: 2
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers: [{name: x, image: x}]
`
	if obj, _, err := decodeDocument([]byte(valid)); err != nil || obj == nil {
		t.Fatalf("valid document: %v, %v", obj, err)
	}
	for name, doc := range map[string]string{
		"unknown field":     strings.Replace(valid, "replicas: 2", "replica: 2", 1),
		"key in wrong case": strings.Replace(valid, "replicas: 2", "Replicas: 2", 1),
		"duplicate key":     strings.Replace(valid, "replicas: 2", "replicas: 2\n  replicas: 3", 1),
		"wrong type":        strings.Replace(valid, "replicas: 2", "replicas: two", 1),
		"unknown nested":    strings.Replace(valid, "image: x", "image: x, imagePullPolicy: Always, port: 1", 1),
		"unknown kind":      strings.Replace(valid, "kind: Deployment", "kind: Deploymnet", 1),
		"kind of other API": strings.Replace(valid, "apps/v1", "apps/v1beta1", 1),
		"not YAML":          "a: [b",
		"no name":           strings.Replace(valid, "name: x\n", "labels: {}\n", 1),
		"a list, not a map": "- a\n- b\n",
	} {
		if _, _, err := decodeDocument([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without an error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// Comments alone are no document: kubectl skips them too.
	if obj, _, err := decodeDocument([]byte("# nothing\n")); obj != nil || err != nil {
		t.Errorf("comment-only document: %v, %v", obj, err)
	}
}
