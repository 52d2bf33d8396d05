package k8s

import (
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// clusterDomain is the DNS domain of the cluster, as in
// payments.shop.svc.cluster.local.
const clusterDomain = "cluster.local"

func deployment(m manifest) (*appsv1.Deployment, bool) {
	d, ok := m.obj.(*appsv1.Deployment)
	return d, ok
}

// objectsOf returns the objects of type T among ms.
func objectsOf[T metav1.Object](ms []manifest) []T {
	var out []T
	for _, m := range ms {
		if o, ok := m.obj.(T); ok {
			out = append(out, o)
		}
	}
	return out
}

// byName returns the object of type T named name in the shop's namespace.
func byName[T metav1.Object](ms []manifest, name string) (T, bool) {
	for _, o := range objectsOf[T](ms) {
		if o.GetName() == name && o.GetNamespace() == namespace {
			return o, true
		}
	}
	var zero T
	return zero, false
}

// selectedDeployments returns the Deployments whose pods sel selects.
func selectedDeployments(t *testing.T, ms []manifest, sel labels.Selector) []*appsv1.Deployment {
	t.Helper()
	var out []*appsv1.Deployment
	for _, d := range objectsOf[*appsv1.Deployment](ms) {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func labelSelector(t *testing.T, ls *metav1.LabelSelector) labels.Selector {
	t.Helper()
	if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		t.Errorf("empty label selector: it would select every pod (or none)")
		return labels.Nothing()
	}
	sel, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		t.Errorf("label selector: %v", err)
		return labels.Nothing()
	}
	return sel
}

// containerPort finds the container port that port (a name or a number)
// refers to in d's pods.
func containerPort(d *appsv1.Deployment, port intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return p, true
			}
		}
	}
	return corev1.ContainerPort{}, false
}

func secretKeys(s *corev1.Secret) []string {
	var keys []string
	for k := range s.Data {
		keys = append(keys, k)
	}
	for k := range s.StringData {
		keys = append(keys, k)
	}
	return keys
}

// TestObjects checks where the objects live: all in the shop's namespace,
// which is among them, none twice, and no Secret among those kubectl apply
// -f deploy/k8s/ applies (its placeholders would replace the real Secrets).
func TestObjects(t *testing.T) {
	ms := loadManifests(t)
	seen := make(map[string]string)
	for _, m := range ms {
		key := m.kind + " " + m.obj.GetNamespace() + "/" + m.obj.GetName()
		if prev, dup := seen[key]; dup {
			t.Errorf("%s: also in %s", m, prev)
		}
		seen[key] = m.source
		switch {
		case m.kind == "Namespace":
			if m.obj.GetNamespace() != "" {
				t.Errorf("%s: a Namespace has no namespace", m)
			}
		case m.obj.GetNamespace() != namespace:
			t.Errorf("%s: metadata.namespace %q, want %q (explicit, so that no object lands in the current context's namespace)", m, m.obj.GetNamespace(), namespace)
		}
		if m.kind == "Secret" && !m.example {
			t.Errorf("%s: Secrets with placeholder data belong under %s/, so that applying the manifests never replaces the real ones", m, exampleDir)
		}
	}
	if !slices.ContainsFunc(ms, func(m manifest) bool { return m.kind == "Namespace" && m.obj.GetName() == namespace && !m.example }) {
		t.Errorf("no Namespace %q among the applied manifests", namespace)
	}
}

// TestServices checks that every Service selects the pods of exactly one
// Deployment and that each of its ports names a port of those pods, under
// the same name; a headless Service maps no ports, so its ports must be the
// pods' ports.
func TestServices(t *testing.T) {
	ms := loadManifests(t)
	for _, s := range objectsOf[*corev1.Service](ms) {
		t.Run(s.Name, func(t *testing.T) {
			if len(s.Spec.Selector) == 0 {
				t.Fatalf("no selector")
			}
			deps := selectedDeployments(t, ms, labels.SelectorFromSet(s.Spec.Selector))
			if len(deps) != 1 {
				t.Fatalf("selector %v selects %d Deployments, want 1", s.Spec.Selector, len(deps))
			}
			d := deps[0]
			headless := s.Spec.ClusterIP == corev1.ClusterIPNone
			if len(s.Spec.Ports) == 0 {
				t.Errorf("no ports")
			}
			for _, sp := range s.Spec.Ports {
				target := sp.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(sp.Port)
				}
				cp, ok := containerPort(d, target)
				if !ok {
					t.Errorf("port %q: targetPort %s is no container port of Deployment %s", sp.Name, target.String(), d.Name)
					continue
				}
				if sp.Name == "" || sp.Name != cp.Name {
					t.Errorf("port %q targets container port %q: name them alike", sp.Name, cp.Name)
				}
				if sp.Protocol != cp.Protocol {
					t.Errorf("port %q: protocol %s, container port %s", sp.Name, sp.Protocol, cp.Protocol)
				}
				if headless && sp.Port != cp.ContainerPort {
					t.Errorf("port %q: %d, but clients of a headless Service dial the pods' port %d", sp.Name, sp.Port, cp.ContainerPort)
				}
			}
		})
	}
}

// TestDeployments checks each Deployment's pods: selector, probes,
// listening address, graceful termination, security, resources, and that
// every Secret, key, volume and env variable they refer to exists.
func TestDeployments(t *testing.T) {
	ms := loadManifests(t)
	bins := binaries(t)
	services := serviceNames(t)
	shutdown := shutdownTimeout(t)
	deps := objectsOf[*appsv1.Deployment](ms)
	if len(deps) == 0 {
		t.Fatal("no Deployments")
	}
	for _, d := range deps {
		t.Run(d.Name, func(t *testing.T) {
			pod := d.Spec.Template.Spec
			if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
				t.Errorf("replicas: want at least 2, so that one can stop while the other serves")
			}
			if !labelSelector(t, d.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("selector %v does not match the pod labels %v", d.Spec.Selector, d.Spec.Template.Labels)
			}
			checkPodSecurity(t, pod)
			volumes := checkVolumes(t, ms, pod)
			if pod.TerminationGracePeriodSeconds == nil {
				t.Errorf("no terminationGracePeriodSeconds")
			}
			for _, c := range pod.Containers {
				t.Run(c.Name, func(t *testing.T) {
					b := bins[c.Name]
					checkContainerSecurity(t, c)
					checkResources(t, c)
					checkEnv(t, ms, c)
					port := checkAddr(t, c, b.flags)
					checkProbes(t, c, port, services[c.Name])
					checkKeyFiles(t, ms, c, b.flags, volumes)
					checkDB(t, ms, c, b.flags)
					if pod.TerminationGracePeriodSeconds != nil {
						checkTermination(t, c, time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second, shutdown)
					}
				})
			}
		})
	}
}

func checkPodSecurity(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	sc := pod.SecurityContext
	if sc == nil {
		t.Errorf("no pod securityContext")
		return
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Errorf("securityContext.runAsNonRoot: want true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("securityContext.runAsUser: want a non-zero uid, so the kubelet can check runAsNonRoot whatever the image says")
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("securityContext.seccompProfile: want RuntimeDefault")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken: want false, the shop does not call the Kubernetes API")
	}
}

func checkContainerSecurity(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil {
		t.Errorf("no securityContext")
		return
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("securityContext.readOnlyRootFilesystem: want true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("securityContext.allowPrivilegeEscalation: want false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("securityContext.privileged: want false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
		t.Errorf("securityContext.capabilities: want drop [ALL] and add none")
	}
}

func checkResources(t *testing.T, c corev1.Container) {
	t.Helper()
	r := c.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := r.Requests[name]; !ok || q.IsZero() {
			t.Errorf("resources.requests.%s: not set", name)
		}
	}
	limit, ok := r.Limits[corev1.ResourceMemory]
	if !ok {
		t.Errorf("resources.limits.memory: not set")
		return
	}
	if req := r.Requests[corev1.ResourceMemory]; limit.Cmp(req) < 0 {
		t.Errorf("memory limit %s below the request %s", limit.String(), req.String())
	}
	// GOMEMLIMIT, if set, must leave the runtime room below the limit.
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			v, err := parseGoMemLimit(e.Value)
			if err != nil {
				t.Errorf("GOMEMLIMIT=%q: %v", e.Value, err)
			} else if v >= limit.Value() {
				t.Errorf("GOMEMLIMIT=%s is not below the memory limit %s", e.Value, limit.String())
			}
		}
	}
}

// parseGoMemLimit parses a GOMEMLIMIT value: bytes with an optional B, KiB,
// MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	for i, unit := range []string{"TiB", "GiB", "MiB", "KiB", "B"} {
		if n, ok := strings.CutSuffix(s, unit); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v << (10 * (4 - i)), err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// checkEnv checks that every $(VAR) in args and command is set in the
// container's env (the kubelet leaves an unknown reference as it is, so the
// binary would get the literal text), and that the Secrets, keys and fields
// the env takes values from exist.
func checkEnv(t *testing.T, ms []manifest, c corev1.Container) {
	t.Helper()
	defined := make(map[string]bool)
	for _, e := range c.Env {
		if defined[e.Name] {
			t.Errorf("env %s set twice", e.Name)
		}
		defined[e.Name] = true
		if e.ValueFrom == nil {
			continue
		}
		switch from := e.ValueFrom; {
		case from.SecretKeyRef != nil:
			ref := from.SecretKeyRef
			s, ok := byName[*corev1.Secret](ms, ref.Name)
			if !ok {
				t.Errorf("env %s: no Secret %q in the manifests", e.Name, ref.Name)
			} else if !slices.Contains(secretKeys(s), ref.Key) {
				t.Errorf("env %s: Secret %q has no key %q (it has %v)", e.Name, ref.Name, ref.Key, secretKeys(s))
			}
		case from.FieldRef != nil:
			switch p := from.FieldRef.FieldPath; p {
			case "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
				"spec.serviceAccountName", "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs":
			default:
				t.Errorf("env %s: fieldRef %q: not a field the downward API offers as env", e.Name, p)
			}
		case from.ResourceFieldRef != nil:
		default:
			t.Errorf("env %s: valueFrom not checked by this test", e.Name)
		}
	}
	if len(c.EnvFrom) != 0 {
		t.Errorf("envFrom: list variables one by one, so the test (and a reader) can see them")
	}
	for _, arg := range slices.Concat(c.Command, c.Args) {
		for _, name := range envRefs(arg) {
			if !defined[name] {
				t.Errorf("argument %q refers to $(%s), which is not in env: the binary would get the text as it is", arg, name)
			}
		}
	}
}

// checkVolumes checks that every Secret volume names a Secret of the
// manifests and keys it has, and that every mount has its volume. It returns
// the volumes by name.
func checkVolumes(t *testing.T, ms []manifest, pod corev1.PodSpec) map[string]corev1.Volume {
	t.Helper()
	volumes := make(map[string]corev1.Volume)
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		if v.Secret == nil {
			continue
		}
		s, ok := byName[*corev1.Secret](ms, v.Secret.SecretName)
		if !ok {
			t.Errorf("volume %s: no Secret %q in the manifests", v.Name, v.Secret.SecretName)
			continue
		}
		for _, item := range v.Secret.Items {
			if !slices.Contains(secretKeys(s), item.Key) {
				t.Errorf("volume %s: Secret %q has no key %q (it has %v)", v.Name, s.Name, item.Key, secretKeys(s))
			}
		}
		if m := v.Secret.DefaultMode; m != nil && *m&0o007 != 0 {
			t.Errorf("volume %s: defaultMode %#o lets every user read the keys", v.Name, *m)
		}
	}
	for _, c := range pod.Containers {
		for _, vm := range c.VolumeMounts {
			if _, ok := volumes[vm.Name]; !ok {
				t.Errorf("container %s mounts volume %q, which the pod does not have", c.Name, vm.Name)
			}
		}
	}
	return volumes
}

// checkKeyFiles checks that every -...-file flag names a file that a mounted
// Secret provides.
func checkKeyFiles(t *testing.T, ms []manifest, c corev1.Container, defs map[string]bool, volumes map[string]corev1.Volume) {
	t.Helper()
	flags, _ := parseArgs(c.Args, defs) // TestFlagsExist reports errors
	for name, file := range flags {
		if !strings.HasSuffix(name, "-file") {
			continue
		}
		if !path.IsAbs(file) {
			t.Errorf("-%s %s: want an absolute path in a mounted Secret", name, file)
			continue
		}
		found := false
		for _, vm := range c.VolumeMounts {
			rel, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
			if !ok {
				continue
			}
			found = true
			v := volumes[vm.Name]
			if v.Secret == nil {
				t.Errorf("-%s %s: volume %s is not a Secret", name, file, vm.Name)
				break
			}
			if !vm.ReadOnly {
				t.Errorf("-%s %s: mount %s is not readOnly", name, file, vm.MountPath)
			}
			var files []string
			for _, item := range v.Secret.Items {
				files = append(files, item.Path)
			}
			if len(v.Secret.Items) == 0 { // every key, as a file
				if s, ok := byName[*corev1.Secret](ms, v.Secret.SecretName); ok {
					files = secretKeys(s)
				}
			}
			if !slices.Contains(files, rel) {
				t.Errorf("-%s %s: the Secret volume %s mounted at %s has no file %q (it has %v)", name, file, vm.Name, vm.MountPath, rel, files)
			}
			break
		}
		if !found {
			t.Errorf("-%s %s: no volume is mounted there", name, file)
		}
	}
}

// checkDB checks -db: a postgres:// URL from a Secret, through an env
// variable. Anything else is a SQLite file to the binaries, which pods cannot
// share (and the root filesystem is read-only).
func checkDB(t *testing.T, ms []manifest, c corev1.Container, defs map[string]bool) {
	t.Helper()
	db, err := flagValue(c, defs, "db")
	if err != nil {
		t.Errorf("%v: the default is a SQLite file", err)
		return
	}
	refs := envRefs(db)
	if len(refs) != 1 || db != "$("+refs[0]+")" {
		t.Errorf("-db %s: want $(VAR), VAR from a Secret: the URL holds a password", db)
		return
	}
	for _, e := range c.Env {
		if e.Name != refs[0] {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("-db $(%s): %s is not from a Secret", e.Name, e.Name)
			return
		}
		ref := e.ValueFrom.SecretKeyRef
		s, ok := byName[*corev1.Secret](ms, ref.Name)
		if !ok {
			return // checkEnv reports it
		}
		url, ok := s.StringData[ref.Key]
		if !ok {
			url = string(s.Data[ref.Key])
		}
		if !strings.HasPrefix(url, "postgres://") && !strings.HasPrefix(url, "postgresql://") {
			t.Errorf("-db $(%s): Secret %s key %s does not start with postgres://: the binaries take anything else for a SQLite file", e.Name, s.Name, ref.Key)
		}
	}
}

// checkAddr checks -addr: it must listen on every interface (localhost, the
// default, is unreachable from outside the pod), on a port the container
// declares. It returns the port.
func checkAddr(t *testing.T, c corev1.Container, defs map[string]bool) int32 {
	t.Helper()
	addr, err := flagValue(c, defs, "addr")
	switch {
	case errors.Is(err, errNoSuchFlag):
		t.Errorf("%v: the default is localhost, unreachable from outside the pod", err)
		return 0
	case err != nil:
		t.Errorf("args do not parse (see TestFlagsExist): %v", err)
		return 0
	}
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("-addr %s: %v", addr, err)
		return 0
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("-addr %s: a loopback address is unreachable from outside the pod, by the Service and the kubelet's probes alike", addr)
	} else if host != "" && (ip == nil || !ip.IsUnspecified()) {
		t.Errorf("-addr %s: listen on every interface (:%s); the pod's IP is not known in advance", addr, portText)
	}
	port, err := strconv.ParseInt(portText, 10, 32)
	if err != nil {
		t.Errorf("-addr %s: port %q is not a number", addr, portText)
		return 0
	}
	if _, ok := containerPortOf(c, int32(port)); !ok {
		t.Errorf("-addr %s: the container declares no port %d", addr, port)
	}
	return int32(port)
}

func containerPortOf(c corev1.Container, port int32) (corev1.ContainerPort, bool) {
	for _, p := range c.Ports {
		if p.ContainerPort == port {
			return p, true
		}
	}
	return corev1.ContainerPort{}, false
}

// checkProbes checks the probes: all gRPC health checks on the port the
// binary listens on; readiness asks about the service the binary serves
// (its name from the generated code), liveness about the server as a whole.
func checkProbes(t *testing.T, c corev1.Container, port int32, services []string) {
	t.Helper()
	if len(services) != 1 {
		t.Errorf("generated service names for %q: %v, want exactly one", c.Name, services)
		return
	}
	probes := []struct {
		name     string
		probe    *corev1.Probe
		required bool
		service  []string // the names it may ask about
	}{
		{"startupProbe", c.StartupProbe, false, []string{"", services[0]}},
		{"readinessProbe", c.ReadinessProbe, true, []string{services[0]}},
		{"livenessProbe", c.LivenessProbe, true, []string{""}},
	}
	for _, p := range probes {
		if p.probe == nil {
			if p.required {
				t.Errorf("no %s", p.name)
			}
			continue
		}
		h := p.probe.ProbeHandler
		if h.GRPC == nil || h.HTTPGet != nil || h.TCPSocket != nil || h.Exec != nil {
			t.Errorf("%s: want a grpc probe (the gRPC health protocol) and nothing else", p.name)
			continue
		}
		if port != 0 && h.GRPC.Port != port {
			t.Errorf("%s: port %d, but the binary listens on %d (-addr)", p.name, h.GRPC.Port, port)
		}
		service := ""
		if h.GRPC.Service != nil {
			service = *h.GRPC.Service
		}
		if !slices.Contains(p.service, service) {
			t.Errorf("%s: service %q, want one of %q", p.name, service, p.service)
		}
	}
	// A pod that stops answering leaves the endpoints before it is restarted.
	if r, l := c.ReadinessProbe, c.LivenessProbe; r != nil && l != nil && window(l) <= window(r) {
		t.Errorf("livenessProbe gives up after %v, readinessProbe after %v: take the pod out of rotation before restarting it", window(l), window(r))
	}
}

// window is how long a probe fails before it acts, with Kubernetes' defaults.
func window(p *corev1.Probe) time.Duration {
	period, failures := p.PeriodSeconds, p.FailureThreshold
	if period == 0 {
		period = 10
	}
	if failures == 0 {
		failures = 3
	}
	return time.Duration(period*failures) * time.Second
}

// checkTermination checks that the pod is given time to drain: a preStop
// sleep while the endpoints forget it, then the server's shutdown timeout
// after SIGTERM, all within the grace period (which the sleep counts against).
func checkTermination(t *testing.T, c corev1.Container, grace, shutdown time.Duration) {
	t.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
		t.Errorf("no lifecycle.preStop.sleep: SIGTERM would come while clients still route to the pod")
		return
	}
	sleep := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	if grace <= sleep+shutdown {
		t.Errorf("terminationGracePeriodSeconds %v: want more than the preStop sleep %v plus the shutdown timeout %v (internal/rpc.ShutdownTimeout)", grace, sleep, shutdown)
	}
}

// TestPaymentsTarget checks how orders finds payments: -payments
// dns:///SERVICE.NAMESPACE.svc.cluster.local:PORT names a headless Service
// that selects the payments pods, and PORT is the port of the Service, of
// the payments container and of payments' -addr. Every other dns:/// flag
// value is checked the same way.
func TestPaymentsTarget(t *testing.T) {
	ms := loadManifests(t)
	bins := binaries(t)
	orders, ok := byName[*appsv1.Deployment](ms, "orders")
	if !ok {
		t.Fatal("no Deployment orders")
	}
	found := false
	for _, d := range objectsOf[*appsv1.Deployment](ms) {
		for _, c := range d.Spec.Template.Spec.Containers {
			flags, _ := parseArgs(c.Args, bins[c.Name].flags)
			for name, value := range flags {
				target, ok := strings.CutPrefix(value, "dns:///")
				if !ok {
					continue
				}
				if d == orders && name == "payments" {
					found = true
				}
				t.Run(d.Name+"/-"+name, func(t *testing.T) { checkDNSTarget(t, ms, bins, name, target) })
			}
		}
	}
	if !found {
		t.Errorf("orders has no -payments dns:///...: with a list of addresses or a ClusterIP it would not follow the payments pods")
	}
}

func checkDNSTarget(t *testing.T, ms []manifest, bins map[string]*binary, flag, target string) {
	host, portText, err := net.SplitHostPort(target)
	if err != nil {
		t.Fatalf("dns:///%s: %v", target, err)
	}
	svcName, ns, ok := strings.Cut(strings.TrimSuffix(strings.TrimSuffix(host, "."), ".svc."+clusterDomain), ".")
	if !ok || strings.Contains(ns, ".") || !strings.HasSuffix(strings.TrimSuffix(host, "."), ".svc."+clusterDomain) {
		t.Fatalf("dns:///%s: want SERVICE.NAMESPACE.svc.%s:PORT", target, clusterDomain)
	}
	if ns != namespace {
		t.Errorf("dns:///%s: namespace %q, want %q", target, ns, namespace)
	}
	port, err := strconv.ParseInt(portText, 10, 32)
	if err != nil {
		t.Fatalf("dns:///%s: port %q", target, portText)
	}
	s, ok := byName[*corev1.Service](ms, svcName)
	if !ok {
		t.Fatalf("dns:///%s: no Service %q", target, svcName)
	}
	if s.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s: clusterIP %q, want None: a ClusterIP resolves to one virtual IP, and the one HTTP/2 connection to it is pinned to one pod", s.Name, s.Spec.ClusterIP)
	}
	if s.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: publishNotReadyAddresses would send calls to pods that are not ready", s.Name)
	}
	if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == int32(port) }) {
		t.Errorf("dns:///%s: Service %s has no port %d", target, s.Name, port)
	}
	deps := selectedDeployments(t, ms, labels.SelectorFromSet(s.Spec.Selector))
	if len(deps) != 1 {
		t.Fatalf("Service %s selects %d Deployments, want 1", s.Name, len(deps))
	}
	d := deps[0]
	if d.Name != flag {
		t.Errorf("-%s reaches the pods of Deployment %s, not %s", flag, d.Name, flag)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if addr, err := flagValue(c, bins[c.Name].flags, "addr"); err == nil {
			if _, p, err := net.SplitHostPort(addr); err != nil || p != portText {
				t.Errorf("dns:///%s: port %s, but %s listens on -addr %s (DNS gives pod IPs: no port mapping)", target, portText, c.Name, addr)
			}
		}
		if _, ok := containerPortOf(c, int32(port)); !ok {
			t.Errorf("dns:///%s: container %s declares no port %d", target, c.Name, port)
		}
	}
}

// TestNetworkPolicies checks that each policy selects pods of the shop, lets
// in pods of the shop, on ports those pods have.
func TestNetworkPolicies(t *testing.T) {
	ms := loadManifests(t)
	for _, np := range objectsOf[*networkingv1.NetworkPolicy](ms) {
		t.Run(np.Name, func(t *testing.T) {
			targets := selectedDeployments(t, ms, labelSelector(t, &np.Spec.PodSelector))
			if len(targets) == 0 {
				t.Errorf("podSelector selects no Deployment's pods")
			}
			for i, rule := range np.Spec.Ingress {
				for _, peer := range rule.From {
					if peer.PodSelector != nil && peer.NamespaceSelector == nil {
						if len(selectedDeployments(t, ms, labelSelector(t, peer.PodSelector))) == 0 {
							t.Errorf("spec.ingress[%d]: from podSelector %v selects no Deployment's pods", i, peer.PodSelector.MatchLabels)
						}
					}
				}
				for _, p := range rule.Ports {
					if p.Port == nil {
						continue
					}
					for _, d := range targets {
						if _, ok := containerPort(d, *p.Port); !ok {
							t.Errorf("spec.ingress[%d]: port %s is no container port of %s", i, p.Port.String(), d.Name)
						}
					}
				}
			}
		})
	}
}

// TestDisruptionBudgets checks that each budget covers one Deployment and
// still lets a node drain.
func TestDisruptionBudgets(t *testing.T) {
	ms := loadManifests(t)
	for _, pdb := range objectsOf[*policyv1.PodDisruptionBudget](ms) {
		t.Run(pdb.Name, func(t *testing.T) {
			deps := selectedDeployments(t, ms, labelSelector(t, pdb.Spec.Selector))
			if len(deps) != 1 {
				t.Fatalf("selects %d Deployments' pods, want 1", len(deps))
			}
			replicas := int32(1)
			if r := deps[0].Spec.Replicas; r != nil {
				replicas = *r
			}
			switch {
			case pdb.Spec.MaxUnavailable != nil:
				if v := pdb.Spec.MaxUnavailable; v.Type == intstr.Int && v.IntVal < 1 {
					t.Errorf("maxUnavailable %s: no pod could ever be evicted", v.String())
				}
			case pdb.Spec.MinAvailable != nil:
				if v := pdb.Spec.MinAvailable; v.Type == intstr.Int && v.IntVal >= replicas {
					t.Errorf("minAvailable %s with %d replicas: no pod could ever be evicted", v.String(), replicas)
				}
			default:
				t.Errorf("neither maxUnavailable nor minAvailable")
			}
		})
	}
}

// TestIngresses checks that each Ingress terminates TLS and routes to a port
// of a Service of the manifests.
func TestIngresses(t *testing.T) {
	ms := loadManifests(t)
	for _, ing := range objectsOf[*networkingv1.Ingress](ms) {
		t.Run(ing.Name, func(t *testing.T) {
			tlsHosts := make(map[string]bool)
			for _, tls := range ing.Spec.TLS {
				if tls.SecretName == "" {
					t.Errorf("tls: no secretName")
				}
				for _, h := range tls.Hosts {
					tlsHosts[h] = true
				}
			}
			var backends []networkingv1.IngressBackend
			if ing.Spec.DefaultBackend != nil {
				backends = append(backends, *ing.Spec.DefaultBackend)
			}
			for _, rule := range ing.Spec.Rules {
				if !tlsHosts[rule.Host] {
					t.Errorf("host %q: not covered by tls: tokens and cookies would cross the internet in clear", rule.Host)
				}
				if rule.HTTP != nil {
					for _, p := range rule.HTTP.Paths {
						backends = append(backends, p.Backend)
					}
				}
			}
			for _, b := range backends {
				if b.Service == nil {
					t.Errorf("a backend that is not a Service")
					continue
				}
				s, ok := byName[*corev1.Service](ms, b.Service.Name)
				if !ok {
					t.Errorf("backend: no Service %q", b.Service.Name)
					continue
				}
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
					return (b.Service.Port.Name != "" && p.Name == b.Service.Port.Name) || (b.Service.Port.Number != 0 && p.Port == b.Service.Port.Number)
				}) {
					t.Errorf("backend: Service %s has no port %s", s.Name, fmt.Sprint(b.Service.Port))
				}
			}
		})
	}
}
