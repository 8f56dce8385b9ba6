//go:build e2e

package e2e

// Workloads on the real node agent (cluster/agent): pods of the real
// controllers, run as processes in their own network namespaces, reached
// through kube-proxy, the cluster DNS, the API server's service proxy and
// the agent's log endpoint.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/ptr"
)

// ourImage is the one image the node agent runs (scripts/cluster passes it
// as --image): bodywork-kube's DEFAULT_IMAGE at the workspace version.
func ourImage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "Cargo.toml"))
	if err != nil {
		t.Fatal(err)
	}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = line
		} else if m := regexp.MustCompile(`^version\s*=\s*"([^"]+)"`).FindStringSubmatch(line); m != nil && section == "[workspace.package]" {
			return "ghcr.io/bodywork-ml/bodywork-rs:" + m[1]
		}
	}
	t.Fatal("no version in Cargo.toml's [workspace.package]")
	return ""
}

// webServer answers every GET with the pod's name and the path, on :8080.
const webServer = `
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = (os.environ["POD_NAME"] + " " + self.path + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(os.environ.get("PORT", "8080"))), H).serve_forever()
`

func podNameEnv() corev1.EnvVar {
	return corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}
}

// web makes a Deployment NAME of 2 replicas of webServer with an http
// readiness probe, behind a ClusterIP Service NAME (port 80 to the named
// port http), and waits until both replicas are available and are the
// Service's ready endpoints.
func (c *cluster) web(t *testing.T, ns, name, image string) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	_, err := c.client.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers: []corev1.Container{{
						Name:    "web",
						Image:   image,
						Command: []string{"python3", "-c", webServer},
						Env:     []corev1.EnvVar{podNameEnv()},
						Ports:   []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: "/healthz", Port: intstr.FromString("http")}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "Deployment "+name+" with 2 available replicas", func() error {
		d, err := c.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.AvailableReplicas != 2 {
			return fmt.Errorf("%d available: %s", d.Status.AvailableReplicas, c.podSummary(ns))
		}
		return nil
	})
	eventually(t, 30*time.Second, "2 ready endpoints of Service "+name, func() error {
		slices, err := c.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + name})
		if err != nil {
			return err
		}
		ready := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d ready endpoints", ready)
		}
		return nil
	})
}

// podSummary: each pod of ns with its phase and container states, for
// failure messages.
func (c *cluster) podSummary(ns string) string {
	pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, p := range pods.Items {
		s := p.Name + " " + string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			switch {
			case cs.State.Waiting != nil:
				s += " waiting " + cs.State.Waiting.Reason + ": " + cs.State.Waiting.Message
			case cs.State.Terminated != nil:
				s += fmt.Sprintf(" terminated %s (%d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
			case cs.State.Running != nil:
				s += fmt.Sprintf(" running ready=%v", cs.Ready)
			}
		}
		out = append(out, s)
	}
	return "[" + strings.Join(out, "; ") + "]"
}

// untilPod watches pod NAME of ns until cond holds, and returns it then.
func (c *cluster) untilPod(t *testing.T, ns, name string, within time.Duration, what string, cond func(watch.EventType, *corev1.Pod) (bool, error)) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return c.client.CoreV1().Pods(ns).List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return c.client.CoreV1().Pods(ns).Watch(ctx, o)
		},
	}
	var last *corev1.Pod
	ev, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(e watch.Event) (bool, error) {
		p, ok := e.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		last = p
		return cond(e.Type, p)
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %s: %v (last seen: %s)", ns, name, what, err, describe(last))
	}
	return ev.Object.(*corev1.Pod)
}

func describe(p *corev1.Pod) string {
	if p == nil {
		return "none"
	}
	return fmt.Sprintf("phase %s, conditions %+v, containers %+v", p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses)
}

// runPod runs a pod of our image with restartPolicy Never to its end and
// returns its log; it fails the test unless the pod Succeeded.
func (c *cluster) runPod(t *testing.T, ns string, pod *corev1.Pod, within time.Duration) string {
	t.Helper()
	ctx := context.Background()
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	if _, err := c.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := c.untilPod(t, ns, pod.Name, within, "to end", func(_ watch.EventType, p *corev1.Pod) (bool, error) {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	logs := c.logs(t, ns, pod.Name, false)
	if p.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("pod %s: %s; log:\n%s", pod.Name, describe(p), logs)
	}
	return logs
}

// logs is the log of the pod's one container, through the API server
// (the node agent's /containerLogs).
func (c *cluster) logs(t *testing.T, ns, pod string, previous bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := c.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Previous: previous}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s/%s (previous=%v): %v", ns, pod, previous, err)
	}
	return string(b)
}

func (c *cluster) kubectl(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(filepath.Dir(c.bin), "kubectl"), append([]string{"--kubeconfig=" + c.kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	return cmd
}

// TestDeploymentServiceByDNSFromPod: a Deployment of 2 replicas with an http
// readiness probe behind a ClusterIP Service answers another pod by the
// Service's names (NAME, NAME.NS, NAME.NS.svc.cluster.local, through the
// pod's resolv.conf), from both replicas; the other pod has the service link
// variables; the replicas have addresses of their own on the pod network.
func TestDeploymentServiceByDNSFromPod(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t)
	image := ourImage(t)
	c.web(t, ns, "web", image)
	svc, err := c.client.CoreV1().Services(ns).Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods of web: %v %s", err, c.podSummary(ns))
	}
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Status.PodIP, "10.244.0.") || p.Status.PodIP == hostIP {
			t.Errorf("pod %s has address %q, want one of its own in 10.244.0.0/24", p.Name, p.Status.PodIP)
		}
	}
	if pods.Items[0].Status.PodIP == pods.Items[1].Status.PodIP {
		t.Errorf("both replicas have address %s", pods.Items[0].Status.PodIP)
	}

	script := `set -e
cat /etc/resolv.conf
echo "WEB_SERVICE_HOST=$WEB_SERVICE_HOST WEB_SERVICE_PORT=$WEB_SERVICE_PORT KUBERNETES_SERVICE_HOST=$KUBERNETES_SERVICE_HOST"
for name in web web.` + ns + ` web.` + ns + `.svc.cluster.local; do
	curl -sSf --max-time 5 --retry 5 --retry-all-errors --retry-delay 1 "http://$name/by-$name"
done
for i in $(seq 30); do curl -sSf --max-time 5 http://web/spread; done
`
	logs := c.runPod(t, ns, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "client", Image: image, Command: []string{"sh", "-c", script},
		}}},
	}, 90*time.Second)

	for _, want := range []string{
		"search " + ns + ".svc.cluster.local svc.cluster.local cluster.local\n",
		"nameserver " + dnsIP + "\n",
		"options ndots:5\n",
		"WEB_SERVICE_HOST=" + svc.Spec.ClusterIP + " WEB_SERVICE_PORT=80 KUBERNETES_SERVICE_HOST=" + apiIP,
		" /by-web\n", " /by-web." + ns + "\n", " /by-web." + ns + ".svc.cluster.local\n",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("client's log lacks %q:\n%s", want, logs)
		}
	}
	for _, p := range pods.Items {
		if !strings.Contains(logs, p.Name+" /spread\n") {
			t.Errorf("no answer from replica %s in 30 requests to http://web/:\n%s", p.Name, logs)
		}
	}
}

// TestPodReachesItselfThroughItsService: a pod calls the Service whose one
// endpoint it is; the node agent's hairpin mode on its bridge port makes
// that work (without it the connection times out).
func TestPodReachesItselfThroughItsService(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t)
	_, err := c.client.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "self"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "self"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	script := `python3 -c "$SERVER" &
for i in $(seq 20); do
	if out=$(curl -sSf --max-time 2 http://self/hairpin 2>&1); then echo "$out"; kill %1; exit 0; fi
	sleep 0.5
done
echo "last: $out"; exit 1
`
	logs := c.runPod(t, ns, &corev1.Pod{
		// Not named "self": the pod's hosts file maps its own name to its address.
		ObjectMeta: metav1.ObjectMeta{Name: "looper", Labels: map[string]string{"app": "self"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "looper", Image: ourImage(t), Command: []string{"sh", "-c", script},
			Env: []corev1.EnvVar{podNameEnv(), {Name: "SERVER", Value: webServer}},
		}}},
	}, 90*time.Second)
	if !strings.Contains(logs, "looper /hairpin\n") {
		t.Errorf("the pod did not reach itself through its Service:\n%s", logs)
	}
}

// TestKubectlProxyServiceProxy: `kubectl proxy` on the loopback serves
// /api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH from the Service's
// pods, through the API server's service proxy (which refuses loopback
// endpoints: the pods' addresses are real ones on the bridge).
func TestKubectlProxyServiceProxy(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t)
	c.web(t, ns, "web", ourImage(t))

	proxy := c.kubectl("proxy", "--address=127.0.0.1", "--port=0")
	stdout, err := proxy.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	proxy.Stderr = os.Stderr
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = proxy.Process.Kill()
		_ = proxy.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := regexp.MustCompile(`Starting to serve on (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		close(addr)
	}()
	var base string
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("kubectl proxy exited without serving")
		}
		base = "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatal("kubectl proxy did not start within 20s")
	}
	for _, port := range []string{"80", "http"} {
		url := base + "/api/v1/namespaces/" + ns + "/services/web:" + port + "/proxy/through/proxy"
		eventually(t, 20*time.Second, "GET "+url, func() error {
			got, err := get(url)
			if err != nil {
				return err
			}
			if !regexp.MustCompile(`^web-\S+ /through/proxy\n$`).MatchString(got) {
				return fmt.Errorf("answered %q", got)
			}
			return nil
		})
	}
}

// TestLogsPrevious: a container that crashes once is restarted (the
// crash-loop back-off), with restartCount 1 and its exit in lastState;
// `kubectl logs` shows the running instance's output, `kubectl logs
// --previous` the crashed one's.
func TestLogsPrevious(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t)
	script := `n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n >/data/n
echo "attempt $n"
[ "$n" -ge 2 ] || exit 3
exec sleep 3600
`
	_, err := c.client.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crashy"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](2),
			Volumes:                       []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{{
				Name: "crashy", Image: ourImage(t), Command: []string{"sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := c.untilPod(t, ns, "crashy", 60*time.Second, "restarted once and running", func(_ watch.EventType, p *corev1.Pod) (bool, error) {
		cs := p.Status.ContainerStatuses
		return len(cs) == 1 && cs[0].RestartCount == 1 && cs[0].State.Running != nil, nil
	})
	last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated
	if last == nil || last.ExitCode != 3 || last.Reason != "Error" {
		t.Errorf("lastState: %+v, want terminated Error with exit code 3", p.Status.ContainerStatuses[0].LastTerminationState)
	}
	eventually(t, 10*time.Second, "kubectl logs crashy", func() error {
		out, err := c.kubectl("-n", ns, "logs", "crashy").CombinedOutput()
		if err != nil || string(out) != "attempt 2\n" {
			return fmt.Errorf("%v: %q, want %q", err, out, "attempt 2\n")
		}
		return nil
	})
	out, err := c.kubectl("-n", ns, "logs", "crashy", "--previous").CombinedOutput()
	if err != nil || string(out) != "attempt 1\n" {
		t.Errorf("kubectl logs --previous: %v: %q, want %q", err, out, "attempt 1\n")
	}
	// Follow the running instance: what it wrote, then the stream stays open.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc, err := c.client.CoreV1().Pods(ns).GetLogs("crashy", &corev1.PodLogOptions{Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	defer rc.Close()
	line, err := bufio.NewReader(rc).ReadString('\n')
	if err != nil || line != "attempt 2\n" {
		t.Errorf("logs -f: %q, %v", line, err)
	}
}

// TestForeignImagePullFails: a Job whose pod names an image other than
// ours: its container waits in ErrImagePull, then ImagePullBackOff, and
// never runs.
func TestForeignImagePullFails(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t)
	const image = "docker.io/library/busybox:1.36"
	_, err := c.client.BatchV1().Jobs(ns).Create(context.Background(), &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "foreign"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "main", Image: image, Command: []string{"sh", "-c", "echo should not run"},
				}},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var pod string
	eventually(t, 30*time.Second, "the Job's pod", func() error {
		pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=foreign"})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 {
			return fmt.Errorf("%d pods", len(pods.Items))
		}
		pod = pods.Items[0].Name
		return nil
	})
	seen := map[string]bool{}
	c.untilPod(t, ns, pod, 60*time.Second, "ErrImagePull then ImagePullBackOff", func(_ watch.EventType, p *corev1.Pod) (bool, error) {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running != nil || cs.State.Terminated != nil {
				return false, fmt.Errorf("container of image %s ran: %+v", image, cs.State)
			}
			if w := cs.State.Waiting; w != nil {
				if w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff" {
					if !strings.Contains(w.Message, image) {
						return false, fmt.Errorf("%s message %q does not name the image", w.Reason, w.Message)
					}
				}
				seen[w.Reason] = true
			}
		}
		return seen["ErrImagePull"] && seen["ImagePullBackOff"], nil
	})
	j, err := c.client.BatchV1().Jobs(ns).Get(context.Background(), "foreign", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Status.Succeeded != 0 {
		t.Errorf("Job foreign succeeded: %+v", j.Status)
	}
}

// TestEvictionDisruptionTarget: a pod evicted through the Eviction API
// gets the DisruptionTarget condition (reason EvictionByEvictionAPI), is
// stopped (SIGTERM: its trap writes to its log) and deleted; the node
// agent keeps the condition in the status it writes.
func TestEvictionDisruptionTarget(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t)
	ctx := context.Background()
	_, err := c.client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "victim"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](10),
			Containers: []corev1.Container{{
				Name: "victim", Image: ourImage(t),
				Command: []string{"sh", "-c", `trap 'echo got SIGTERM; exit 0' TERM; echo started; while :; do sleep 0.2; done`},
			}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.untilPod(t, ns, "victim", 60*time.Second, "running", func(_ watch.EventType, p *corev1.Pod) (bool, error) {
		return p.Status.Phase == corev1.PodRunning, nil
	})
	err = c.client.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Name: "victim", Namespace: ns},
	})
	if err != nil {
		t.Fatalf("eviction: %v", err)
	}
	var disrupted *corev1.Pod
	var lastLog string
	c.untilPod(t, ns, "victim", 60*time.Second, "DisruptionTarget, then deleted", func(e watch.EventType, p *corev1.Pod) (bool, error) {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.DisruptionTarget && cond.Status == corev1.ConditionTrue {
				if cond.Reason != "EvictionByEvictionAPI" {
					return false, fmt.Errorf("DisruptionTarget reason %q", cond.Reason)
				}
				disrupted = p
			}
		}
		if disrupted != nil && e != watch.Deleted && p.Status.Phase != corev1.PodRunning {
			// Its log while it still exists: the container saw SIGTERM.
			if b, err := c.client.CoreV1().Pods(ns).GetLogs("victim", &corev1.PodLogOptions{}).DoRaw(ctx); err == nil {
				lastLog = string(b)
			}
		}
		if e == watch.Deleted {
			if disrupted == nil {
				return false, fmt.Errorf("deleted without a DisruptionTarget condition: %s", describe(p))
			}
			return true, nil
		}
		return false, nil
	})
	if _, err := c.client.CoreV1().Pods(ns).Get(ctx, "victim", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod victim still there after eviction: %v", err)
	}
	if lastLog != "" && !strings.Contains(lastLog, "got SIGTERM") {
		t.Errorf("victim's last log has no SIGTERM: %q", lastLog)
	}
	t.Logf("last status before deletion: %s; log %q", describe(disrupted), lastLog)
}
