package agent

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/flowcontrol"
	testingclock "k8s.io/utils/clock/testing"
)

func onePod(policy v1.RestartPolicy) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Generation: 1},
		Spec:       v1.PodSpec{RestartPolicy: policy, Containers: []v1.Container{{Name: "c", Image: "i"}}},
	}
}

func exitedWith(code int32) *v1.ContainerStateTerminated {
	t := time.Unix(1000, 0)
	return terminatedState("bodywork://x", code, t, t.Add(time.Second), "", "")
}

func TestPodPhaseIsTheKubeletsGetPhase(t *testing.T) {
	running := containerView{Name: "c", Running: &v1.ContainerStateRunning{}}
	creating := containerView{Name: "c"}
	crashLooping := containerView{Name: "c", Waiting: &v1.ContainerStateWaiting{Reason: reasonCrashLoopBackOff}, Last: exitedWith(1)}
	exited := func(code int32) containerView { return containerView{Name: "c", Terminated: exitedWith(code)} }
	for _, tc := range []struct {
		name     string
		policy   v1.RestartPolicy
		c        containerView
		terminal bool
		want     v1.PodPhase
	}{
		{"creating", v1.RestartPolicyAlways, creating, false, v1.PodPending},
		{"image pull", v1.RestartPolicyNever, containerView{Name: "c", Waiting: &v1.ContainerStateWaiting{Reason: reasonErrImagePull}}, false, v1.PodPending},
		{"running", v1.RestartPolicyNever, running, false, v1.PodRunning},
		{"never, 0", v1.RestartPolicyNever, exited(0), false, v1.PodSucceeded},
		{"never, 1", v1.RestartPolicyNever, exited(1), false, v1.PodFailed},
		{"onfailure, 0", v1.RestartPolicyOnFailure, exited(0), false, v1.PodSucceeded},
		{"onfailure, 1 (restarting)", v1.RestartPolicyOnFailure, exited(1), false, v1.PodRunning},
		{"always, 0 (restarting)", v1.RestartPolicyAlways, exited(0), false, v1.PodRunning},
		{"crash loop", v1.RestartPolicyAlways, crashLooping, false, v1.PodRunning},
		{"deleted, SIGTERM", v1.RestartPolicyAlways, exited(143), true, v1.PodFailed},
		{"deleted, exited 0", v1.RestartPolicyAlways, exited(0), true, v1.PodSucceeded},
		{"deleted before starting", v1.RestartPolicyAlways, creating, true, v1.PodFailed},
	} {
		pod := onePod(tc.policy)
		s := buildPodStatus(pod, podView{Containers: []containerView{tc.c}, PodIsTerminal: tc.terminal}, metav1.Now())
		if s.Phase != tc.want {
			t.Errorf("%s: phase %s, want %s", tc.name, s.Phase, tc.want)
		}
	}
}

func condition(s v1.PodStatus, t v1.PodConditionType) v1.PodCondition {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c
		}
	}
	return v1.PodCondition{}
}

func TestConditionsAndContainerStatuses(t *testing.T) {
	pod := onePod(v1.RestartPolicyAlways)
	earlier := metav1.NewTime(time.Unix(500, 0))
	pod.Status.Conditions = []v1.PodCondition{
		{Type: v1.DisruptionTarget, Status: v1.ConditionTrue, Reason: "EvictionByEvictionAPI"},
		{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: earlier},
	}
	now := metav1.NewTime(time.Unix(2000, 0))
	start := metav1.NewTime(time.Unix(1500, 0))

	notReady := containerView{Name: "c", Image: "i", ContainerID: "bodywork://a", RestartCount: 2,
		Running: &v1.ContainerStateRunning{StartedAt: start}, Started: true, Last: exitedWith(1)}
	s := buildPodStatus(pod, podView{HostIP: "10.0.0.1", PodIP: "10.0.0.5", SandboxReady: true, StartTime: &start,
		Containers: []containerView{notReady}}, now)
	if s.Phase != v1.PodRunning || s.PodIP != "10.0.0.5" || s.HostIP != "10.0.0.1" || s.StartTime == nil {
		t.Errorf("status %+v", s)
	}
	if c := condition(s, v1.DisruptionTarget); c.Reason != "EvictionByEvictionAPI" {
		t.Errorf("a condition the kubelet does not own is kept: %v", s.Conditions)
	}
	if c := condition(s, v1.PodScheduled); c.Status != v1.ConditionTrue || !c.LastTransitionTime.Equal(&earlier) {
		t.Errorf("PodScheduled %+v", c)
	}
	if c := condition(s, v1.ContainersReady); c.Status != v1.ConditionFalse || c.Reason != "ContainersNotReady" ||
		c.Message != "containers with unready status: [c]" || !c.LastTransitionTime.Equal(&now) {
		t.Errorf("ContainersReady %+v", c)
	}
	if c := condition(s, v1.PodReady); c.Status != v1.ConditionFalse || c.Reason != "ContainersNotReady" {
		t.Errorf("Ready %+v", c)
	}
	if c := condition(s, v1.PodInitialized); c.Status != v1.ConditionTrue {
		t.Errorf("Initialized %+v", c)
	}
	cs := s.ContainerStatuses[0]
	if cs.Ready || !*cs.Started || cs.RestartCount != 2 || cs.State.Running == nil ||
		cs.LastTerminationState.Terminated.ExitCode != 1 || cs.LastTerminationState.Terminated.Reason != "Error" {
		t.Errorf("container status %+v", cs)
	}

	ready := notReady
	ready.Ready = true
	s = buildPodStatus(pod, podView{SandboxReady: true, Containers: []containerView{ready}}, now)
	if condition(s, v1.PodReady).Status != v1.ConditionTrue || condition(s, v1.ContainersReady).Status != v1.ConditionTrue {
		t.Errorf("ready: %v", s.Conditions)
	}
	types := sets.New[v1.PodConditionType]()
	for _, c := range s.Conditions {
		if types.Has(c.Type) {
			t.Errorf("condition %s twice", c.Type)
		}
		types.Insert(c.Type)
	}

	// Waiting to restart: the exit is the last state, the phase Running.
	loop := containerView{Name: "c", ContainerID: "bodywork://a", Last: exitedWith(2),
		Waiting: &v1.ContainerStateWaiting{Reason: reasonCrashLoopBackOff, Message: "back-off 10s ..."}}
	s = buildPodStatus(pod, podView{Containers: []containerView{loop}}, now)
	cs = s.ContainerStatuses[0]
	if cs.State.Waiting.Reason != reasonCrashLoopBackOff || cs.LastTerminationState.Terminated.ExitCode != 2 || s.Phase != v1.PodRunning {
		t.Errorf("crash loop %+v, phase %s", cs, s.Phase)
	}

	// Terminated by a deletion while running: a container the agent could
	// not see end is reported lost; the phase is terminal.
	s = buildPodStatus(pod, podView{PodIsTerminal: true, Containers: []containerView{loop}}, now)
	if s.Phase != v1.PodFailed || condition(s, v1.PodReady).Reason != "PodFailed" {
		t.Errorf("terminal: %s %v", s.Phase, s.Conditions)
	}

	// A terminal phase never goes back.
	pod.Status.Phase = v1.PodSucceeded
	s = buildPodStatus(pod, podView{Containers: []containerView{ready}}, now)
	if s.Phase != v1.PodSucceeded {
		t.Errorf("phase left Succeeded: %s", s.Phase)
	}
}

func TestExitsAreCompletedOrError(t *testing.T) {
	if r := exitedWith(0).Reason; r != "Completed" {
		t.Errorf("exit 0: %s", r)
	}
	if r := exitedWith(137).Reason; r != "Error" {
		t.Errorf("exit 137: %s", r)
	}
	if r := terminatedState("x", 128, time.Now(), time.Now(), reasonStartError, "exec: ...").Reason; r != "StartError" {
		t.Errorf("start error: %s", r)
	}
}

func TestCrashLoopBackOffDoublesToFiveMinutesAndResets(t *testing.T) {
	clock := testingclock.NewFakeClock(time.Unix(0, 0))
	b := flowcontrol.NewFakeBackOff(10*time.Second, 300*time.Second, clock)
	b.HasExpiredFunc = func(eventTime, lastUpdate time.Time, _ time.Duration) bool {
		return eventTime.Sub(lastUpdate) > 600*time.Second
	}
	// The first exit restarts at once.
	if d, until := crashLoop(b, "k", clock.Now()); d != 0 || until != 0 {
		t.Fatalf("first exit: %v %v", d, until)
	}
	var waits []time.Duration
	for i := 0; i < 8; i++ {
		clock.Step(time.Second) // it runs 1 s, then exits
		exit := clock.Now()
		d, until := crashLoop(b, "k", exit)
		if d == 0 {
			t.Fatalf("exit %d restarted at once", i+2)
		}
		waits = append(waits, d)
		if until != d {
			t.Errorf("left %v of %v", until, d)
		}
		clock.Step(d - time.Second)
		if d2, _ := crashLoop(b, "k", exit); d2 == 0 {
			t.Fatalf("restarted before the back-off ended")
		}
		clock.Step(time.Second)
		if d3, _ := crashLoop(b, "k", exit); d3 != 0 {
			t.Fatalf("not restarted once the back-off ended (%v)", d3)
		}
	}
	want := []time.Duration{10, 20, 40, 80, 160, 300, 300, 300}
	for i := range want {
		if waits[i] != want[i]*time.Second {
			t.Errorf("waits %v, want %v (seconds)", waits, want)
			break
		}
	}
	// Ten minutes without an exit: back to 10 s.
	clock.Step(601 * time.Second)
	if d, _ := crashLoop(b, "k", clock.Now()); d != 0 {
		t.Fatalf("after 10 min: %v", d)
	}
	clock.Step(time.Second)
	if d, _ := crashLoop(b, "k", clock.Now()); d != 10*time.Second {
		t.Errorf("after a reset the back-off is %v", d)
	}
}

func TestImagePullBackOff(t *testing.T) {
	clock := testingclock.NewFakeClock(time.Unix(0, 0))
	b := flowcontrol.NewFakeBackOff(10*time.Second, 300*time.Second, clock)
	var pulls []time.Duration
	start := clock.Now()
	// The pod worker syncs a failing pod every 10 s: a pull when the
	// back-off since the last one has passed, the gaps doubling.
	for i := 0; i < 40; i++ {
		if pullNow(b, "uid_img") {
			pulls = append(pulls, clock.Since(start))
		}
		clock.Step(10 * time.Second)
	}
	want := []time.Duration{0, 10, 30, 70, 150, 310}
	for i := range want {
		if i >= len(pulls) || pulls[i] != want[i]*time.Second {
			t.Fatalf("pulls at %v, want %v (seconds)", pulls, want)
		}
	}
}
