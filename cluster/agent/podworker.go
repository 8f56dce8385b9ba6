package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"
)

// syncRetry is how soon a pod whose sync failed is synced again: the
// kubelet's pod worker back-off period, jittered by up to half of it.
func syncRetry() time.Duration { return wait.Jitter(10*time.Second, 0.5) }

// containerRun is one container of a pod across its restarts.
type containerRun struct {
	spec         v1.Container
	init         bool
	restartCount int32
	cur          *instance // the latest instance, running or exited
	prev         *instance // the one before (its log is --previous)
	last         *v1.ContainerStateTerminated
	waiting      *v1.ContainerStateWaiting
}

// podWorker runs one pod: its sandbox (network namespace, hosts file,
// volumes), its containers, their restarts and probes, its status and its
// termination. One goroutine per pod syncs it whenever it is kicked (the
// pod changed, a container exited, a probe changed) or a back-off ends.
type podWorker struct {
	a    *Agent
	uid  types.UID
	kick chan struct{}

	mu   sync.Mutex // guards pod, gone, and the runs' fields read by the log server
	pod  *v1.Pod
	gone bool

	dir          string
	net          *sandboxNet
	podIP        string
	sandboxReady bool
	vols         *podVolumes
	etcMounts    []bindMount
	startTime    *metav1.Time
	init         []*containerRun
	containers   []*containerRun
	finished     bool // terminal: containers done, sandbox removed
	terminated   bool // killed for a deletion
	posted       *v1.PodStatus
	pullErrors   map[string]string
}

func newPodWorker(a *Agent, pod *v1.Pod) *podWorker {
	w := &podWorker{
		a: a, uid: pod.UID, pod: pod, kick: make(chan struct{}, 1),
		dir:        filepath.Join(a.cfg.StateDir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		pullErrors: map[string]string{},
	}
	for _, c := range pod.Spec.InitContainers {
		w.init = append(w.init, &containerRun{spec: c, init: true})
	}
	for _, c := range pod.Spec.Containers {
		w.containers = append(w.containers, &containerRun{spec: c})
	}
	return w
}

func (w *podWorker) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *podWorker) update(pod *v1.Pod, gone bool) {
	w.mu.Lock()
	if pod != nil {
		w.pod = pod
	}
	w.gone = w.gone || gone
	w.mu.Unlock()
	w.poke()
}

func (w *podWorker) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		done, next := w.sync(ctx)
		if done {
			return
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if next > 0 {
			timer.Reset(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-timer.C:
		}
	}
}

// sync does what the pod needs now; it returns true once the pod is gone
// and everything of it removed, else how soon to sync again (0: when
// kicked).
func (w *podWorker) sync(ctx context.Context) (bool, time.Duration) {
	w.mu.Lock()
	pod, gone := w.pod, w.gone
	w.mu.Unlock()
	if gone {
		w.kill(pod)
		w.removeAll()
		return true, 0
	}
	if pod.DeletionTimestamp != nil {
		return false, w.terminate(ctx, pod)
	}
	if w.finished {
		return false, 0
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		// Terminal already (an agent before this one ran it): the kubelet
		// never starts the containers of a terminal pod again.
		w.kill(pod)
		w.finished = true
		return false, 0
	}
	if w.startTime == nil {
		now := metav1.Now()
		w.startTime = &now
	}
	next := &nexter{}
	if !w.sandboxReady {
		if err := w.createSandbox(ctx, pod); err != nil {
			klog.ErrorS(err, "creating the pod sandbox", "pod", klog.KObj(pod))
			w.postStatus(ctx, pod, w.status(pod, false))
			return false, syncRetry()
		}
	}
	if w.vols != nil && len(w.vols.tokens) > 0 {
		due, err := w.vols.refreshTokens(ctx)
		if err != nil {
			klog.ErrorS(err, "refreshing a service account token", "pod", klog.KObj(pod))
		}
		next.at(time.Until(due))
	}
	initDone := true
	for _, r := range w.init {
		if r.cur != nil && r.cur.exited() && r.cur.exitCode == 0 {
			continue
		}
		initDone = false
		w.step(ctx, pod, r, next)
		break
	}
	if initDone {
		for _, r := range w.containers {
			w.step(ctx, pod, r, next)
		}
	}
	status := w.status(pod, false)
	if status.Phase == v1.PodSucceeded || status.Phase == v1.PodFailed {
		// The pod is done: the kubelet stops its sandbox, which ends
		// whatever the containers left running. Its logs stay.
		w.kill(pod)
		w.finished = true
	}
	w.postStatus(ctx, pod, status)
	return false, next.d
}

// crashLoop is the kubelet's doBackOff for a container that exited at
// finished and is to restart: while the back-off since that exit lasts,
// the back-off and how long is left; otherwise (0, 0) and the back-off
// moves to its next step (10 s doubling to 5 min, reset after 10 min
// without an exit), and the container restarts now.
func crashLoop(b *flowcontrol.Backoff, key string, finished time.Time) (time.Duration, time.Duration) {
	if b.IsInBackOffSince(key, finished) {
		delay := b.Get(key)
		return delay, finished.Add(delay).Sub(b.Clock.Now())
	}
	b.Next(key, finished)
	return 0, 0
}

// pullNow is the image manager's back-off check: false while the back-off
// since the last failed pull lasts; true means a pull happens now (and,
// since it fails, the back-off moves to its next step).
func pullNow(b *flowcontrol.Backoff, key string) bool {
	now := b.Clock.Now()
	if b.IsInBackOffSinceUpdate(key, now) {
		return false
	}
	b.Next(key, now)
	return true
}

// nexter keeps the earliest of the delays it is given.
type nexter struct{ d time.Duration }

func (n *nexter) at(d time.Duration) {
	if d <= 0 {
		d = time.Second
	}
	if n.d == 0 || d < n.d {
		n.d = d
	}
}

func podFullName(pod *v1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}

// step starts, restarts or leaves one container, as the kubelet's
// SyncPod does with computePodActions and doBackOff.
func (w *podWorker) step(ctx context.Context, pod *v1.Pod, r *containerRun, next *nexter) {
	c := &r.spec
	if r.cur != nil {
		if !r.cur.exited() {
			return
		}
		if !shouldRestart(c, &pod.Spec, r.cur.exitCode) {
			w.setWaiting(r, nil)
			return
		}
		key := strings.Join([]string{pod.Name, pod.Namespace, string(pod.UID), c.Name, c.Image}, "_")
		if delay, until := crashLoop(w.a.crashBackoff, key, r.cur.finishedAt); until > 0 {
			msg := fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", delay, c.Name, podFullName(pod))
			if r.waiting == nil || r.waiting.Message != msg {
				w.a.event(pod, v1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", c.Name, podFullName(pod))
			}
			w.setWaiting(r, &v1.ContainerStateWaiting{Reason: reasonCrashLoopBackOff, Message: msg})
			next.at(until)
			return
		}
	}
	if !w.pullImage(pod, c, next) {
		return
	}
	if err := w.start(ctx, pod, r); err != nil {
		reason := reasonCreateError
		var cfgErr configError
		if asConfigError(err, &cfgErr) {
			reason = reasonConfigError
		}
		w.a.event(pod, v1.EventTypeWarning, "Failed", "Error: %v", err)
		w.setWaiting(r, &v1.ContainerStateWaiting{Reason: reason, Message: err.Error()})
		next.at(syncRetry())
	}
}

func (w *podWorker) setWaiting(r *containerRun, s *v1.ContainerStateWaiting) {
	w.mu.Lock()
	r.waiting = s
	w.mu.Unlock()
}

// pullImage is the image manager's EnsureImageExists: the one image is
// present; any other fails to pull, then backs off (10 s doubling to 5
// min), reporting ErrImagePull and ImagePullBackOff in turn.
func (w *podWorker) pullImage(pod *v1.Pod, c *v1.Container, next *nexter) bool {
	if c.Image == w.a.cfg.Image {
		return true
	}
	image := c.Image
	if !strings.Contains(image[strings.LastIndex(image, "/")+1:], ":") && !strings.Contains(image, "@") {
		image += ":latest"
	}
	r := w.runOf(c.Name)
	key := string(pod.UID) + "_" + image
	next.at(syncRetry())
	if !pullNow(w.a.imageBackoff, key) {
		msg := fmt.Sprintf("Back-off pulling image %q", image)
		w.a.event(pod, v1.EventTypeNormal, "BackOff", "%s", msg)
		w.a.event(pod, v1.EventTypeWarning, "Failed", "Error: %s", reasonImagePullBackOff)
		if prev, ok := w.pullErrors[key]; ok {
			msg += ": " + prev
		}
		w.setWaiting(r, &v1.ContainerStateWaiting{Reason: reasonImagePullBackOff, Message: msg})
		return false
	}
	w.a.event(pod, v1.EventTypeNormal, "Pulling", "Pulling image %q", image)
	msg := fmt.Sprintf("failed to pull and unpack image %q: failed to resolve reference %q: %s: not found (the bodywork node agent runs only %q)",
		image, image, image, w.a.cfg.Image)
	w.pullErrors[key] = reasonErrImagePull + ": " + msg
	w.a.event(pod, v1.EventTypeWarning, "Failed", "Failed to pull image %q: %s", image, msg)
	w.a.event(pod, v1.EventTypeWarning, "Failed", "Error: %s", reasonErrImagePull)
	w.setWaiting(r, &v1.ContainerStateWaiting{Reason: reasonErrImagePull, Message: msg})
	return false
}

func (w *podWorker) runOf(name string) *containerRun {
	for _, r := range append(append([]*containerRun{}, w.init...), w.containers...) {
		if r.spec.Name == name {
			return r
		}
	}
	return nil
}

// configError marks an environment the kubelet could not build
// (CreateContainerConfigError).
type configError struct{ error }

func asConfigError(err error, target *configError) bool {
	ce, ok := err.(configError)
	if ok {
		*target = ce
	}
	return ok
}

// start starts a new instance of the container.
func (w *podWorker) start(ctx context.Context, pod *v1.Pod, r *containerRun) error {
	c := &r.spec
	env, err := w.a.containerEnv(ctx, pod, c, w.podIP)
	if err != nil {
		return configError{err}
	}
	user, err := containerIdentity(pod, c)
	if err != nil {
		return configError{err}
	}
	argv := containerArgv(c, env)
	attempt := r.restartCount
	if r.cur != nil {
		attempt++
	}
	cdir := filepath.Join(w.dir, "containers", c.Name)
	scratch := filepath.Join(cdir, "scratch")
	// A fresh writable directory per instance, like a container's layer.
	_ = os.RemoveAll(scratch)
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}
	// The container's own: it is its HOME (and working directory).
	if err := os.Chown(scratch, int(user.UID), int(user.GID)); err != nil {
		return err
	}
	dir := scratch
	if c.WorkingDir != "" {
		if st, err := os.Stat(c.WorkingDir); err != nil || !st.IsDir() {
			return fmt.Errorf("workingDir %s does not exist on this node (containers share the host's file system)", c.WorkingDir)
		}
		dir = c.WorkingDir
	}
	mounts := append([]bindMount{}, w.etcMounts...)
	if w.vols != nil {
		vm, err := w.vols.containerMounts(c, w.a.points)
		if err != nil {
			return err
		}
		mounts = append(mounts, vm...)
	}
	spec := execSpec{
		Argv:     argv,
		Env:      envList(w.a.imageEnv(env, scratch, podHostname(pod))),
		Dir:      dir,
		Hostname: podHostname(pod),
		Mounts:   mounts,
		User:     user,
	}
	if w.net != nil {
		spec.NetNS = w.net.NetNSPath()
	}
	if pod.Spec.HostNetwork {
		spec.Hostname = ""
	}
	logPath := filepath.Join(cdir, fmt.Sprintf("%d.log", attempt))
	if attempt >= 2 {
		_ = os.Remove(filepath.Join(cdir, fmt.Sprintf("%d.log", attempt-2)))
	}
	inst, err := startInstance(spec, logPath, attempt, w.poke)
	if err != nil {
		return err
	}
	w.a.track(inst)
	w.mu.Lock()
	if r.cur != nil {
		r.last = w.terminatedOf(r.cur)
		r.prev = r.cur
		r.restartCount = attempt
	}
	r.cur = inst
	r.waiting = nil
	w.mu.Unlock()
	if inst.reason == "" {
		w.a.event(pod, v1.EventTypeNormal, "Started", "Started container %s", c.Name)
	}
	w.startProbes(pod, r, inst)
	return nil
}

// containerArgv is what the container runs: bodywork's image has no
// ENTRYPOINT and CMD ["bodywork", "--help"], so command and args run as
// given, args alone replace the CMD, and neither runs the CMD.
func containerArgv(c *v1.Container, env map[string]string) []string {
	command, args := expandCommand(c, env)
	argv := append(command, args...)
	if len(argv) == 0 {
		argv = []string{"bodywork", "--help"}
	}
	return argv
}

func (w *podWorker) terminatedOf(i *instance) *v1.ContainerStateTerminated {
	return terminatedState(containerIDPrefix+i.id, i.exitCode, i.startedAt, i.finishedAt, i.reason, i.message)
}

// containerIDPrefix is the runtime part of a container ID.
const containerIDPrefix = "bodywork://"

func podHostname(pod *v1.Pod) string {
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

func (w *podWorker) startProbes(pod *v1.Pod, r *containerRun, inst *instance) {
	c := &r.spec
	ctx, cancel := context.WithCancel(context.Background())
	inst.probes = cancel
	if c.StartupProbe == nil {
		inst.started.Store(true)
	}
	if c.ReadinessProbe == nil {
		inst.ready.Store(true)
	}
	kill := func(message string) {
		w.a.event(pod, v1.EventTypeWarning, "Unhealthy", "%s", message)
		w.a.event(pod, v1.EventTypeNormal, "Killing", "%s", message)
		go inst.stop(w.graceForProbe(pod, c))
	}
	for kind, p := range map[probeKind]*v1.Probe{probeReadiness: c.ReadinessProbe, probeLiveness: c.LivenessProbe, probeStartup: c.StartupProbe} {
		if p == nil || r.init {
			continue
		}
		pr := &prober{kind: kind, probe: p, inst: inst, c: c, podIP: w.podIP, onFail: kill, onChange: w.poke}
		if pr.podIP == "" {
			pr.podIP = w.a.hostIP
		}
		go pr.run(ctx)
	}
}

func (w *podWorker) graceForProbe(pod *v1.Pod, c *v1.Container) time.Duration {
	g := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	if c.LivenessProbe != nil && c.LivenessProbe.TerminationGracePeriodSeconds != nil {
		g = *c.LivenessProbe.TerminationGracePeriodSeconds
	}
	return graceDuration(g)
}

// graceDuration: the kubelet gives every container at least 2 s.
func graceDuration(seconds int64) time.Duration {
	if seconds < 2 {
		seconds = 2
	}
	return time.Duration(seconds) * time.Second
}

// status builds the pod's status from what the worker knows.
func (w *podWorker) status(pod *v1.Pod, terminal bool) v1.PodStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	view := podView{
		HostIP: w.a.hostIP, PodIP: w.podIP, SandboxReady: w.sandboxReady && !w.finished && !w.terminated,
		StartTime: w.startTime, PodIsTerminal: terminal,
	}
	for _, r := range w.init {
		view.Init = append(view.Init, w.viewOf(r))
	}
	for _, r := range w.containers {
		view.Containers = append(view.Containers, w.viewOf(r))
	}
	return buildPodStatus(pod, view, metav1.Now())
}

// viewOf: call with w.mu held.
func (w *podWorker) viewOf(r *containerRun) containerView {
	v := containerView{Name: r.spec.Name, Image: r.spec.Image, RestartCount: r.restartCount, Last: r.last}
	i := r.cur
	if i == nil {
		v.Waiting = r.waiting
		return v
	}
	v.ContainerID = containerIDPrefix + i.id
	if !i.exited() {
		v.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(i.startedAt)}
		v.Started = i.started.Load()
		v.Ready = v.Started && i.ready.Load()
		return v
	}
	term := w.terminatedOf(i)
	if r.waiting != nil {
		v.Waiting = r.waiting
		v.Last = term
		return v
	}
	v.Terminated = term
	v.Ready = r.init && i.exitCode == 0
	return v
}

// postStatus patches the pod's status when it changed, as the status
// manager does: a strategic merge patch from the API server's status,
// keeping the conditions the kubelet does not own, with the pod's UID as
// a precondition.
func (w *podWorker) postStatus(ctx context.Context, pod *v1.Pod, status v1.PodStatus) bool {
	if w.posted != nil && equality.Semantic.DeepEqual(*w.posted, status) {
		return true
	}
	pods := w.a.client.CoreV1().Pods(pod.Namespace)
	latest, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil || latest.UID != pod.UID {
		return false
	}
	merged := status.DeepCopy()
	merged.Conditions = nil
	for _, c := range latest.Status.Conditions {
		if !kubeletConditions[c.Type] {
			merged.Conditions = append(merged.Conditions, c)
		}
	}
	for _, c := range status.Conditions {
		if kubeletConditions[c.Type] {
			merged.Conditions = append(merged.Conditions, c)
		}
	}
	oldJSON, err := json.Marshal(v1.Pod{Status: latest.Status})
	if err != nil {
		return false
	}
	newJSON, err := json.Marshal(v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: pod.UID}, Status: *merged})
	if err != nil {
		return false
	}
	patch, err := strategicpatch.CreateTwoWayMergePatch(oldJSON, newJSON, v1.Pod{})
	if err != nil {
		return false
	}
	if _, err := pods.Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			klog.ErrorS(err, "patching pod status", "pod", klog.KObj(pod))
		}
		return false
	}
	w.posted = &status
	return true
}

// terminate ends a pod being deleted: SIGTERM to its containers, SIGKILL
// after the grace period, the sandbox removed, the terminal status posted,
// then the pod deleted (grace 0, UID precondition) as the status manager
// does once the API server shows a terminal phase.
func (w *podWorker) terminate(ctx context.Context, pod *v1.Pod) time.Duration {
	if !w.terminated {
		grace := graceDuration(30)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = graceDuration(*pod.DeletionGracePeriodSeconds)
		} else if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = graceDuration(*pod.Spec.TerminationGracePeriodSeconds)
		}
		w.stopAll(pod, grace)
		w.kill(pod)
		w.terminated = true
	}
	if !w.postStatus(ctx, pod, w.status(pod, true)) {
		return syncRetry()
	}
	zero := int64(0)
	err := w.a.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		klog.ErrorS(err, "deleting terminated pod", "pod", klog.KObj(pod))
		return syncRetry()
	}
	return 0
}

// stopAll stops every running instance of the pod at once, each given
// the grace period.
func (w *podWorker) stopAll(pod *v1.Pod, grace time.Duration) {
	var wg sync.WaitGroup
	for _, r := range append(append([]*containerRun{}, w.init...), w.containers...) {
		i := r.cur
		if i == nil || i.exited() {
			continue
		}
		if i.probes != nil {
			i.probes()
		}
		if pod != nil {
			w.a.event(pod, v1.EventTypeNormal, "Killing", "Stopping container %s", r.spec.Name)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			i.stop(grace)
		}()
	}
	wg.Wait()
}

// kill ends what is left: every process group, everything in the network
// namespace; then the namespace goes (the pod keeps its address in its
// status) and the volumes with it.
func (w *podWorker) kill(pod *v1.Pod) {
	w.stopAll(nil, 0)
	if w.net != nil {
		w.a.net.removePod(w.net)
		w.net = nil
	}
	_ = os.RemoveAll(filepath.Join(w.dir, "volumes"))
}

// removeAll removes the pod's directory (scratch, logs) and forgets its
// instances, once the pod is gone from the API server.
func (w *podWorker) removeAll() {
	for _, r := range append(append([]*containerRun{}, w.init...), w.containers...) {
		for _, i := range []*instance{r.cur, r.prev} {
			if i != nil {
				w.a.untrack(i)
			}
		}
	}
	_ = os.RemoveAll(w.dir)
}
