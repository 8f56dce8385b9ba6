package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"
)

// Agent is the node agent: one Node, and the pods bound to it.
type Agent struct {
	cfg    *Config
	client kubernetes.Interface
	net    *podNetwork
	hostIP string
	points *mountPoints
	path   string // the containers' PATH

	services corelisters.ServiceLister
	recorder record.EventRecorder

	// The kubelet's two back-offs: restarts of crashed containers, and
	// image pulls (10 s doubling to 5 min).
	crashBackoff *flowcontrol.Backoff
	imageBackoff *flowcontrol.Backoff

	mu        sync.Mutex
	workers   map[types.UID]*podWorker
	instances map[string]*instance
	wg        sync.WaitGroup

	// Ready is closed once the Node is registered and the server listens.
	Ready chan struct{}
	// ServerAddr is where the HTTPS server listens, once Ready.
	ServerAddr string
}

// New checks cfg and prepares an agent; Run starts it.
func New(cfg Config, client kubernetes.Interface) (*Agent, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n, err := newPodNetwork(&cfg)
	if err != nil {
		return nil, err
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	if cfg.BinDir != "" {
		path = cfg.BinDir + ":" + path
	}
	crash := flowcontrol.NewBackOff(10*time.Second, 300*time.Second)
	crash.HasExpiredFunc = func(eventTime, lastUpdate time.Time, _ time.Duration) bool {
		return eventTime.Sub(lastUpdate) > 600*time.Second
	}
	return &Agent{
		cfg: &cfg, client: client, net: n, hostIP: n.gateway.String(),
		points:       &mountPoints{record: filepath.Join(cfg.StateDir, "mountpoints")},
		path:         path,
		crashBackoff: crash,
		imageBackoff: flowcontrol.NewBackOff(10*time.Second, 300*time.Second),
		workers:      map[types.UID]*podWorker{},
		instances:    map[string]*instance{},
		Ready:        make(chan struct{}),
	}, nil
}

// HostIP is the node's InternalIP: the host's end of the pod bridge.
func (a *Agent) HostIP() string { return a.hostIP }

// Run registers the Node, runs its pods and serves their logs until ctx
// ends; then it stops every pod's processes and removes everything it
// created (network namespaces, veths, the bridge, mount points, its state).
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o755); err != nil {
		return err
	}
	// An agent that died left its pods running: they go now, and are
	// started again below as the API server lists them.
	for _, what := range Cleanup(*a.cfg) {
		klog.InfoS("removed what a previous agent left", "what", what)
	}
	if err := os.MkdirAll(a.cfg.StateDir, 0o755); err != nil {
		return err
	}
	defer a.shutdown()
	if err := a.net.setUp(); err != nil {
		return fmt.Errorf("setting up the pod network: %w", err)
	}
	srv, err := a.serve()
	if err != nil {
		return err
	}
	defer srv.Close()

	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: a.cfg.NodeName})

	node := newNodeRegistration(a.client, a.cfg, a.hostIP)
	for {
		err := node.register(ctx)
		if err == nil {
			break
		}
		klog.ErrorS(err, "registering the node; retrying")
		select {
		case <-ctx.Done():
			return err
		case <-time.After(2 * time.Second):
		}
	}
	go node.run(ctx)

	all := informers.NewSharedInformerFactory(a.client, 0)
	a.services = all.Core().V1().Services().Lister()
	mine := informers.NewSharedInformerFactoryWithOptions(a.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
		}))
	pods := mine.Core().V1().Pods().Informer()
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { a.podChanged(ctx, nil, o, false) },
		UpdateFunc: func(old, o any) { a.podChanged(ctx, old, o, false) },
		DeleteFunc: func(o any) { a.podChanged(ctx, nil, o, true) },
	})
	all.Start(ctx.Done())
	// Service variables need the Services first (makeEnvironmentVariables).
	all.WaitForCacheSync(ctx.Done())
	mine.Start(ctx.Done())
	mine.WaitForCacheSync(ctx.Done())
	close(a.Ready)
	klog.InfoS("node agent running", "node", a.cfg.NodeName, "hostIP", a.hostIP, "server", a.ServerAddr)
	<-ctx.Done()
	mine.Shutdown()
	all.Shutdown()
	return nil
}

// podChanged hands a pod's change to its worker (starting one for a new
// pod). As in the kubelet's pod config, a change of the status alone
// (the agent's own patches, a condition another component adds) is
// recorded without syncing the pod.
func (a *Agent) podChanged(ctx context.Context, old, o any, deleted bool) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	pod, ok := o.(*v1.Pod)
	if !ok || pod.Spec.NodeName != a.cfg.NodeName {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w, ok := a.workers[pod.UID]
	if !ok {
		if deleted || ctx.Err() != nil {
			return
		}
		w = newPodWorker(a, pod)
		a.workers[pod.UID] = w
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			w.run(ctx)
			a.mu.Lock()
			if a.workers[pod.UID] == w && w.gone {
				delete(a.workers, pod.UID)
			}
			a.mu.Unlock()
		}()
		return
	}
	if prev, ok := old.(*v1.Pod); ok && !deleted && onlyStatusChanged(prev, pod) {
		w.mu.Lock()
		w.pod = pod
		w.mu.Unlock()
		return
	}
	w.update(pod, deleted)
}

func onlyStatusChanged(a, b *v1.Pod) bool {
	return equality.Semantic.DeepEqual(a.Spec, b.Spec) &&
		equality.Semantic.DeepEqual(a.Labels, b.Labels) &&
		equality.Semantic.DeepEqual(a.Annotations, b.Annotations) &&
		equality.Semantic.DeepEqual(a.DeletionTimestamp, b.DeletionTimestamp) &&
		equality.Semantic.DeepEqual(a.DeletionGracePeriodSeconds, b.DeletionGracePeriodSeconds)
}

// shutdown stops every pod (SIGTERM, SIGKILL after 2 s) and removes all
// the agent created.
func (a *Agent) shutdown() {
	a.wg.Wait()
	a.mu.Lock()
	workers := make([]*podWorker, 0, len(a.workers))
	for _, w := range a.workers {
		workers = append(workers, w)
	}
	a.mu.Unlock()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stopAll(nil, 2*time.Second)
			w.kill(nil)
		}()
	}
	wg.Wait()
	a.net.tearDown()
	for _, what := range Cleanup(*a.cfg) {
		klog.InfoS("removed at shutdown", "what", what)
	}
}

func (a *Agent) event(pod *v1.Pod, kind, reason, format string, args ...any) {
	if a.recorder != nil && pod != nil {
		a.recorder.Eventf(pod, kind, reason, format, args...)
	}
}

func (a *Agent) track(i *instance) {
	a.mu.Lock()
	a.instances[i.id] = i
	a.mu.Unlock()
	recordProcess(a.cfg.StateDir, i.pid)
}

func (a *Agent) untrack(i *instance) {
	a.mu.Lock()
	delete(a.instances, i.id)
	a.mu.Unlock()
}

// containerEnv: the container's variables from the API server.
func (a *Agent) containerEnv(ctx context.Context, pod *v1.Pod, c *v1.Container, podIP string) (map[string]string, error) {
	var services []*v1.Service
	if a.services != nil {
		var err error
		if services, err = a.services.List(labels.Everything()); err != nil {
			return nil, fmt.Errorf("failed to list services when setting up env vars")
		}
	}
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	return containerEnv(ctx, apiEnvSource{a.client}, pod, c,
		podAddresses{PodIP: podIP, HostIP: a.hostIP},
		serviceEnv(services, pod.Namespace, links), machineCapacity(a.cfg.StateDir))
}

// imageEnv adds what the image and the runtime set, where the container
// does not: bodywork's image (the Dockerfile) sets PATH, HOME (its user's),
// PYTHONUNBUFFERED and BODYWORK_HOME; the runtime sets HOSTNAME. Here
// HOME is the container's fresh scratch directory and PATH the host's
// with --bin-dir first; --image-env adds to them (PATH included).
func (a *Agent) imageEnv(env map[string]string, scratch, hostname string) map[string]string {
	out := map[string]string{
		"PATH":             a.path,
		"HOME":             scratch,
		"HOSTNAME":         hostname,
		"PYTHONUNBUFFERED": "1",
		"BODYWORK_HOME":    filepath.Join(scratch, ".bodywork"),
	}
	for k, v := range a.cfg.ImageEnv {
		out[k] = v
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// recordProcess notes a container's process group in the state directory
// with its start time, so --cleanup can end it without hitting a reused
// process ID.
func recordProcess(stateDir string, pid int) {
	start := processStart(pid)
	if start == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "processes"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%d %s\n", pid, start)
}

// processStart is field 22 of /proc/PID/stat: when the process started.
func processStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 19 {
			return f[19]
		}
	}
	return ""
}

// Cleanup removes everything an agent with this configuration created:
// the process groups it started, its network namespaces (and what runs
// in them), veths and bridge, the mount points it made, its state
// directory. It returns what it removed.
func Cleanup(cfg Config) []string {
	cfg.Defaults()
	var removed []string
	if b, err := os.ReadFile(filepath.Join(cfg.StateDir, "processes")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				continue
			}
			pid, err := strconv.Atoi(f[0])
			if err != nil || pid <= 1 || processStart(pid) != f[1] {
				continue
			}
			if syscall.Kill(-pid, syscall.SIGKILL) == nil {
				removed = append(removed, "process group "+f[0])
			}
		}
	}
	removed = append(removed, cleanupNetwork(cfg.NamePrefix, cfg.Bridge, cfg.StateDir)...)
	for _, p := range removeMountPoints(filepath.Join(cfg.StateDir, "mountpoints")) {
		removed = append(removed, "mount point "+p)
	}
	if _, err := os.Stat(cfg.StateDir); err == nil {
		_ = os.RemoveAll(filepath.Join(cfg.StateDir, "pods"))
		_ = os.Remove(filepath.Join(cfg.StateDir, "processes"))
		_ = os.Remove(cfg.StateDir)
	}
	return removed
}
