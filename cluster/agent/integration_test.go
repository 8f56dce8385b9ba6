package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestMain(m *testing.M) {
	// The agent re-executes its own binary as a container's helper.
	RunHelperIfRequested()
	os.Exit(m.Run())
}

const itImage = "bodywork-test-image:1"

// itCluster is an agent running against the fake API server, with names
// and a pod range of its own so that it never meets a real agent.
type itCluster struct {
	t      *testing.T
	client *fake.Clientset
	agent  *Agent
	cfg    Config
	http   *http.Client

	mu      sync.Mutex
	final   map[string]v1.PodStatus // the last status patched before a pod was deleted
	deleted map[string]metav1.DeleteOptions
}

// requireRoot fails (never skips) a test that needs root.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the node agent's integration tests need root (network namespaces, a bridge, mounts): run them as root")
	}
}

func startCluster(t *testing.T) (*itCluster, func()) {
	requireRoot(t)
	for _, tool := range []string{"ip", "nsenter", "setpriv", "sh", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the node agent's integration test needs %s: %v", tool, err)
		}
	}
	ns := "it"
	client := fake.NewClientset(
		&v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns}, Data: map[string][]byte{"password": []byte("s3cret")}},
		&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Namespace: ns}, Data: map[string]string{"ca.crt": "THE-CA"}},
		&v1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
			Spec: v1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []v1.ServicePort{{Name: "https", Port: 443, Protocol: "TCP"}}}},
	)
	c := &itCluster{t: t, client: client, final: map[string]v1.PodStatus{}, deleted: map[string]metav1.DeleteOptions{}}
	// What the real API server does that the fake does not: tokens, and
	// remembering the last status of a pod the agent deletes.
	client.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "token" {
			return false, nil, nil
		}
		req := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.TokenRequest).DeepCopy()
		req.Status.Token = "token-for-" + req.Spec.BoundObjectRef.Name
		req.Status.ExpirationTimestamp = metav1.NewTime(time.Now().Add(time.Hour))
		return true, req, nil
	})
	client.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteActionImpl)
		pod, err := client.Tracker().Get(v1.SchemeGroupVersion.WithResource("pods"), d.Namespace, d.Name)
		if err == nil {
			c.mu.Lock()
			c.final[d.Name] = pod.(*v1.Pod).Status
			c.deleted[d.Name] = d.DeleteOptions
			c.mu.Unlock()
		}
		return false, nil, nil
	})

	// Containers running as a user other than root reach their working
	// directories by path: the state directory's ancestors must let them.
	tmp := t.TempDir()
	for _, d := range []string{filepath.Dir(tmp), tmp} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(tmp, "state")
	c.cfg = Config{
		NodeName: "it-node", StateDir: state, Bridge: "bwt-br0", PodCIDR: "10.244.251.0/24",
		NamePrefix: "bwt", Image: itImage, Port: 0, ClusterDNS: "10.96.0.10",
	}
	a, err := New(c.cfg, client)
	if err != nil {
		t.Fatal(err)
	}
	c.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.Ready:
	case err := <-done:
		t.Fatalf("agent stopped: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("agent not ready after 30 s")
	}
	c.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return c, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("agent did not stop within 60 s")
		}
	}
}

func (c *itCluster) create(pod *v1.Pod) {
	c.t.Helper()
	pod.Namespace = "it"
	pod.UID = types.UID("uid-" + pod.Name)
	pod.Spec.NodeName = c.cfg.NodeName
	if pod.Spec.RestartPolicy == "" {
		pod.Spec.RestartPolicy = v1.RestartPolicyAlways
	}
	if _, err := c.client.CoreV1().Pods("it").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// wait polls the pod until cond holds.
func (c *itCluster) wait(name string, timeout time.Duration, what string, cond func(*v1.Pod) bool) *v1.Pod {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var pod *v1.Pod
	for time.Now().Before(deadline) {
		p, err := c.client.CoreV1().Pods("it").Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			pod = p
			if cond(p) {
				return p
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("pod %s: %s not seen within %v; last status: %+v", name, what, timeout, statusOf(pod))
	return nil
}

func statusOf(p *v1.Pod) any {
	if p == nil {
		return "no pod"
	}
	return p.Status
}

func (c *itCluster) logs(pod, container, query string) (int, string) {
	c.t.Helper()
	resp, err := c.http.Get(fmt.Sprintf("https://%s/containerLogs/it/%s/%s?%s", c.agent.ServerAddr, pod, container, query))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func sh(script string) []string { return []string{"sh", "-c", script} }

func cs(p *v1.Pod) v1.ContainerStatus {
	if len(p.Status.ContainerStatuses) == 0 {
		return v1.ContainerStatus{}
	}
	return p.Status.ContainerStatuses[0]
}

func podCondition(p *v1.Pod, t v1.PodConditionType) v1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func netnsList(t *testing.T) string {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestPodsRunAsProcessesEndToEnd runs pods through the agent against the
// fake API server: a batch pod (env, secrets, service links, the service
// account volume, its own network namespace and hostname, an empty
// working directory, logs), a web server with probes reached at its pod
// IP and then deleted (SIGTERM, terminal status, deletion, DisruptionTarget
// kept), a crash loop, a liveness failure, a grace period ending in
// SIGKILL, an image that cannot be pulled and a missing secret; then the
// agent stops and nothing of it is left.
func TestPodsRunAsProcessesEndToEnd(t *testing.T) {
	c, stop := startCluster(t)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	yes := true
	saVolume := v1.Volume{Name: "kube-api-access-x", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
		Sources: []v1.VolumeProjection{
			{ServiceAccountToken: &v1.ServiceAccountTokenProjection{Path: "token"}},
			{ConfigMap: &v1.ConfigMapProjection{LocalObjectReference: v1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []v1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &v1.DownwardAPIProjection{Items: []v1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
		}}}}
	saMount := v1.VolumeMount{Name: "kube-api-access-x", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true}

	c.create(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "batch"}, Spec: v1.PodSpec{
		RestartPolicy: v1.RestartPolicyNever,
		Volumes:       []v1.Volume{saVolume},
		Containers: []v1.Container{{Name: "c", Image: itImage,
			Command: sh(`echo "$(GREETING) $PASSWORD $POD $MY_IP $KUBERNETES_SERVICE_HOST"; echo to-stderr >&2
hostname; test -z "$(ls -A .)" && echo empty-dir; test "$HOME" = "$PWD" && echo home-is-cwd
ip -4 -o addr show eth0 | grep -q "$MY_IP/24" && echo own-address
grep -q "$MY_IP	batch" /etc/hosts && echo hosts-file
grep -q "nameserver 10.96.0.10" /etc/resolv.conf && echo resolv-conf
D=/var/run/secrets/kubernetes.io/serviceaccount; echo "sa $(cat $D/namespace) $(cat $D/ca.crt) $(cat $D/token)"
touch $D/x 2>/dev/null || echo read-only
sleep 2; echo last-line; exit 3`),
			Env: []v1.EnvVar{
				{Name: "WHO", Value: "you"},
				{Name: "GREETING", Value: "hi $(WHO)"},
				{Name: "PASSWORD", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
				{Name: "SSH_KEY", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "ssh"}, Key: "k", Optional: &yes}}},
				{Name: "POD", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "MY_IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			},
			VolumeMounts: []v1.VolumeMount{saMount},
		}}}})

	web := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: v1.PodSpec{
		Containers: []v1.Container{{Name: "c", Image: itImage,
			Command: []string{"python3", "-m", "http.server", "8080"},
			Ports:   []v1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: &v1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}},
				PeriodSeconds: 1},
			LivenessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: sh(`test "$(hostname)" = web`)}},
				PeriodSeconds: 1, FailureThreshold: 1},
		}}}}
	c.create(web)
	c.create(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crash"}, Spec: v1.PodSpec{
		Containers: []v1.Container{{Name: "c", Image: itImage, Command: sh(`echo attempt; exit 1`)}}}})
	c.create(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "unhealthy"}, Spec: v1.PodSpec{
		Containers: []v1.Container{{Name: "c", Image: itImage, Command: []string{"sleep", "1000"},
			LivenessProbe: &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(9)}},
				PeriodSeconds: 1, FailureThreshold: 2}}}}})
	grace := int64(2)
	c.create(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stubborn"}, Spec: v1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		Containers:                    []v1.Container{{Name: "c", Image: itImage, Command: sh(`trap "echo ignored" TERM; while true; do sleep 0.1; done`)}}}})
	c.create(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "init"}, Spec: v1.PodSpec{
		RestartPolicy: v1.RestartPolicyOnFailure,
		Volumes:       []v1.Volume{{Name: "shared", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}},
		InitContainers: []v1.Container{{Name: "prepare", Image: itImage, Command: sh(`echo prepared > /shared/note`),
			VolumeMounts: []v1.VolumeMount{{Name: "shared", MountPath: "/shared"}}}},
		Containers: []v1.Container{{Name: "c", Image: itImage, Command: sh(`cat /shared/note`),
			VolumeMounts: []v1.VolumeMount{{Name: "shared", MountPath: "/shared"}}}}}})
	finishedBefore := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "finished-before"}, Spec: v1.PodSpec{
		Containers: []v1.Container{{Name: "c", Image: itImage, Command: sh(`echo ran again`)}}},
		Status: v1.PodStatus{Phase: v1.PodSucceeded}}
	c.create(finishedBefore)
	c.create(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "badimage"}, Spec: v1.PodSpec{
		RestartPolicy: v1.RestartPolicyNever,
		Containers:    []v1.Container{{Name: "c", Image: "example.com/not/here", Command: []string{"true"}}}}})
	// As bodywork's pods are (the restricted Pod Security Standard), with
	// an fsGroup and a supplementary group of their own.
	restricted := restrictedPod().Spec
	restricted.SecurityContext.FSGroup = ptr(int64(2000))
	restricted.SecurityContext.SupplementalGroups = []int64{3000}
	restricted.Volumes = []v1.Volume{saVolume, {Name: "data", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}}
	restricted.Containers[0].Image = itImage
	restricted.Containers[0].VolumeMounts = []v1.VolumeMount{saMount, {Name: "data", MountPath: "/bwt-data"}}
	restricted.Containers[0].Command = sh(`echo "ids $(id -u) $(id -g) $(id -G)"
grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status
touch "$HOME/x" && echo "home $(stat -c %u:%g "$HOME")"
echo "emptydir $(stat -c %a:%g /bwt-data)"; echo x > /bwt-data/f && echo "file $(stat -c %u:%g /bwt-data/f)"
echo "token $(stat -c %g /var/run/secrets/kubernetes.io/serviceaccount/token)"
exec sleep 1000`)
	restricted.Containers[0].ReadinessProbe = &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{
		Command: sh(`test "$(id -u):$(id -G)" = "1000:1000 2000 3000" && grep -q '^NoNewPrivs:.1' /proc/self/status`)}},
		PeriodSeconds: 1}
	c.create(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "restricted"}, Spec: restricted})
	rootImage := restrictedPod().Spec
	rootImage.SecurityContext.RunAsUser = nil
	rootImage.Containers[0].Image = itImage
	rootImage.Containers[0].Command = []string{"true"}
	c.create(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "rootimage"}, Spec: rootImage})
	c.create(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nosecret"}, Spec: v1.PodSpec{
		Containers: []v1.Container{{Name: "c", Image: itImage, Command: []string{"true"},
			Env: []v1.EnvVar{{Name: "X", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{
				LocalObjectReference: v1.LocalObjectReference{Name: "gone"}, Key: "k"}}}}}}}})

	// The image that is not ours fails to pull at once.
	c.wait("badimage", 10*time.Second, "ErrImagePull", func(p *v1.Pod) bool {
		w := cs(p).State.Waiting
		return w != nil && w.Reason == reasonErrImagePull && p.Status.Phase == v1.PodPending
	})

	// The batch pod: running, followed live, then failed with its exit code.
	c.wait("batch", 20*time.Second, "Running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	code, followed := c.logs("batch", "c", "follow=true")
	if code != 200 || !strings.HasSuffix(followed, "last-line\n") {
		t.Errorf("follow: %d %q", code, followed)
	}
	batch := c.wait("batch", 20*time.Second, "Failed", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodFailed })
	ip := batch.Status.PodIP
	if !strings.HasPrefix(ip, "10.244.251.") || batch.Status.HostIP != "10.244.251.1" {
		t.Errorf("addresses: pod %q host %q", ip, batch.Status.HostIP)
	}
	if term := cs(batch).State.Terminated; term == nil || term.ExitCode != 3 || term.Reason != "Error" {
		t.Errorf("batch container: %+v", cs(batch).State)
	}
	_, out := c.logs("batch", "c", "")
	for _, want := range []string{"hi you s3cret batch " + ip + " 10.96.0.1\n", "to-stderr\n", "batch\n", "empty-dir\n",
		"home-is-cwd\n", "own-address\n", "hosts-file\n", "resolv-conf\n", "sa it THE-CA token-for-batch\n", "read-only\n", "last-line\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("batch log lacks %q:\n%s", want, out)
		}
	}
	if _, tail := c.logs("batch", "c", "tailLines=1&timestamps=true"); !strings.HasSuffix(tail, " last-line\n") || strings.Count(tail, "\n") != 1 || !strings.HasPrefix(tail, "20") {
		t.Errorf("tail with timestamps: %q", tail)
	}
	if code, msg := c.logs("batch", "c", "previous=true"); code != 400 || !strings.Contains(msg, `previous terminated container "c" in pod "batch" not found`) {
		t.Errorf("previous of a first instance: %d %q", code, msg)
	}
	if code, _ := c.logs("nopod", "c", ""); code != 404 {
		t.Errorf("logs of an unknown pod: %d", code)
	}
	if podCondition(batch, v1.PodReady) != v1.ConditionFalse {
		t.Errorf("a failed pod is not ready")
	}
	// A finished pod's namespace is gone; its logs stay.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Contains(netnsList(t), "bwt-uid-batch") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(netnsList(t), "bwt-uid-batch") {
		t.Errorf("the finished pod's network namespace is still there")
	}

	// An init container, then the container, sharing an emptyDir.
	init := c.wait("init", 20*time.Second, "Succeeded", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded })
	if s := init.Status.InitContainerStatuses; len(s) != 1 || s[0].State.Terminated == nil || s[0].State.Terminated.Reason != "Completed" || !s[0].Ready {
		t.Errorf("init container status: %+v", s)
	}
	if _, out := c.logs("init", "c", ""); out != "prepared\n" {
		t.Errorf("the container did not see what the init container wrote: %q", out)
	}
	if _, out := c.logs("init", "prepare", ""); out != "" {
		t.Errorf("init container log: %q", out)
	}
	// A pod already terminal is not run again.
	if p, _ := c.client.CoreV1().Pods("it").Get(context.Background(), "finished-before", metav1.GetOptions{}); len(p.Status.ContainerStatuses) != 0 {
		t.Errorf("a terminal pod was run: %+v", p.Status)
	}

	// The web pod: ready through its probes, reachable at its address.
	web = c.wait("web", 20*time.Second, "Ready", func(p *v1.Pod) bool { return podCondition(p, v1.PodReady) == v1.ConditionTrue })
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + web.Status.PodIP + ":8080/")
	if err != nil {
		t.Errorf("the web pod at its address: %v", err)
	} else {
		resp.Body.Close()
	}
	// Its bridge port in hairpin mode (a pod reaching itself through its
	// own Service comes back by the port it left by).
	if ports, _ := filepath.Glob("/sys/class/net/bwt-br0/brif/*/hairpin_mode"); len(ports) == 0 {
		t.Errorf("no port on the bridge bwt-br0")
	} else {
		for _, p := range ports {
			if b, err := os.ReadFile(p); err != nil || strings.TrimSpace(string(b)) != "1" {
				t.Errorf("%s: %q, %v; want 1", p, b, err)
			}
		}
	}
	time.Sleep(2 * time.Second)
	if web, _ = c.client.CoreV1().Pods("it").Get(context.Background(), "web", metav1.GetOptions{}); cs(web).RestartCount != 0 {
		t.Errorf("the exec liveness probe (hostname in the container's UTS namespace) failed: %+v", cs(web))
	}

	// The crash loop: restarted at once, then backing off.
	crash := c.wait("crash", 20*time.Second, "CrashLoopBackOff", func(p *v1.Pod) bool {
		w := cs(p).State.Waiting
		return w != nil && w.Reason == reasonCrashLoopBackOff
	})
	want := fmt.Sprintf("back-off 10s restarting failed container=c pod=crash_it(%s)", crash.UID)
	if s := cs(crash); s.RestartCount != 1 || s.State.Waiting.Message != want || s.LastTerminationState.Terminated == nil ||
		s.LastTerminationState.Terminated.ExitCode != 1 || crash.Status.Phase != v1.PodRunning {
		t.Errorf("crash loop: %+v phase %s", s, crash.Status.Phase)
	}
	if code, prev := c.logs("crash", "c", "previous=true"); code != 200 || prev != "attempt\n" {
		t.Errorf("crash --previous: %d %q", code, prev)
	}
	c.wait("crash", 20*time.Second, "a restart after 10 s", func(p *v1.Pod) bool { return cs(p).RestartCount == 2 })

	// The liveness failure: killed (SIGTERM) and restarted.
	unhealthy := c.wait("unhealthy", 20*time.Second, "a restart", func(p *v1.Pod) bool { return cs(p).RestartCount >= 1 })
	if last := cs(unhealthy).LastTerminationState.Terminated; last == nil || last.ExitCode != 143 {
		t.Errorf("killed by its liveness probe: %+v", cs(unhealthy).LastTerminationState)
	}

	// The image back-off, and the missing secret.
	bad := c.wait("badimage", 30*time.Second, "ImagePullBackOff", func(p *v1.Pod) bool {
		w := cs(p).State.Waiting
		return w != nil && w.Reason == reasonImagePullBackOff
	})
	if m := cs(bad).State.Waiting.Message; !strings.HasPrefix(m, `Back-off pulling image "example.com/not/here:latest": ErrImagePull: `) {
		t.Errorf("ImagePullBackOff message %q", m)
	}
	if code, msg := c.logs("badimage", "c", ""); code != 400 || !strings.Contains(msg, "is waiting to start: trying and failing to pull image") {
		t.Errorf("logs of a pod that cannot pull: %d %q", code, msg)
	}
	nosecret := c.wait("nosecret", 10*time.Second, "CreateContainerConfigError", func(p *v1.Pod) bool {
		w := cs(p).State.Waiting
		return w != nil && w.Reason == reasonConfigError
	})
	if m := cs(nosecret).State.Waiting.Message; m != `secrets "gone" not found` {
		t.Errorf("config error message %q", m)
	}

	// The restricted pod runs as its user, with its groups and without
	// privileges, in a home and an emptyDir it may write; its exec probe
	// runs as it does.
	c.wait("restricted", 20*time.Second, "Ready", func(p *v1.Pod) bool { return podCondition(p, v1.PodReady) == v1.ConditionTrue })
	_, out = c.logs("restricted", "c", "")
	for _, want := range []string{"ids 1000 1000 1000 2000 3000\n", "NoNewPrivs:\t1\n", "CapEff:\t0000000000000000\n",
		"CapBnd:\t0000000000000000\n", "home 1000:1000\n", "emptydir 2777:2000\n", "file 1000:2000\n", "token 2000\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("restricted pod's log lacks %q:\n%s", want, out)
		}
	}
	// runAsNonRoot and no user: the image's, root; refused as the kubelet does.
	rootimage := c.wait("rootimage", 10*time.Second, "CreateContainerConfigError", func(p *v1.Pod) bool {
		w := cs(p).State.Waiting
		return w != nil && w.Reason == reasonConfigError
	})
	if m, want := cs(rootimage).State.Waiting.Message, `container has runAsNonRoot and image will run as root (pod: "rootimage_it(uid-rootimage)", container: c)`; m != want {
		t.Errorf("runAsNonRoot message %q, want %q", m, want)
	}

	// Deletion, as the API server does it after an eviction: the
	// DisruptionTarget condition, then deletionTimestamp with a grace period.
	deleteGracefully := func(name string, evicted bool) {
		p, err := c.client.CoreV1().Pods("it").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if evicted {
			p.Status.Conditions = append(p.Status.Conditions, v1.PodCondition{Type: v1.DisruptionTarget,
				Status: v1.ConditionTrue, Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting"})
			if p, err = c.client.CoreV1().Pods("it").UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		now := metav1.Now()
		g := int64(30)
		if p.Spec.TerminationGracePeriodSeconds != nil {
			g = *p.Spec.TerminationGracePeriodSeconds
		}
		p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &g
		if _, err := c.client.CoreV1().Pods("it").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(name string, within time.Duration) v1.PodStatus {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if _, err := c.client.CoreV1().Pods("it").Get(context.Background(), name, metav1.GetOptions{}); err != nil {
				c.mu.Lock()
				defer c.mu.Unlock()
				if o := c.deleted[name]; o.GracePeriodSeconds == nil || *o.GracePeriodSeconds != 0 || o.Preconditions == nil {
					t.Errorf("%s deleted with %+v, want grace 0 and a UID precondition", name, o)
				}
				return c.final[name]
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("pod %s not deleted within %v", name, within)
		return v1.PodStatus{}
	}
	started := time.Now()
	deleteGracefully("web", true)
	deleteGracefully("stubborn", false)
	final := gone("web", 15*time.Second)
	if final.Phase != v1.PodFailed || final.ContainerStatuses[0].State.Terminated == nil ||
		final.ContainerStatuses[0].State.Terminated.ExitCode != 143 {
		t.Errorf("web's last status: %s %+v", final.Phase, final.ContainerStatuses)
	}
	evicted := false
	for _, cond := range final.Conditions {
		evicted = evicted || (cond.Type == v1.DisruptionTarget && cond.Reason == "EvictionByEvictionAPI")
	}
	if !evicted {
		t.Errorf("the DisruptionTarget condition was lost: %+v", final.Conditions)
	}
	final = gone("stubborn", 15*time.Second)
	if took := time.Since(started); took < 2*time.Second {
		t.Errorf("the grace period was not waited for: %v", took)
	}
	if s := final.ContainerStatuses[0].State.Terminated; s == nil || s.ExitCode != 137 {
		t.Errorf("stubborn's last status: %+v", final.ContainerStatuses)
	}
	for _, name := range []string{"web", "stubborn"} {
		if strings.Contains(netnsList(t), "bwt-uid-"+name) {
			t.Errorf("%s's network namespace is left", name)
		}
	}

	// The agent stops: nothing of it is left.
	stop()
	stopped = true
	if l := netnsList(t); strings.Contains(l, "bwt-") {
		t.Errorf("network namespaces left: %s", l)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Contains(string(out), "bwt") {
		t.Errorf("links left: %s", out)
	}
	if _, err := os.Stat(c.cfg.StateDir); !os.IsNotExist(err) {
		t.Errorf("state directory left: %v", err)
	}
	if out, _ := exec.Command("pgrep", "-f", "sleep 1000|http.server 8080|while true; do sleep 0.1").Output(); len(out) > 0 {
		t.Errorf("processes left: %s", out)
	}
}
