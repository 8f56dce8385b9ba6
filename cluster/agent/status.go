package agent

import (
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Waiting and terminated reasons, as the kubelet and containerd report them.
const (
	reasonContainerCreating = "ContainerCreating"
	reasonPodInitializing   = "PodInitializing"
	reasonErrImagePull      = "ErrImagePull"
	reasonImagePullBackOff  = "ImagePullBackOff"
	reasonCrashLoopBackOff  = "CrashLoopBackOff"
	reasonConfigError       = "CreateContainerConfigError"
	reasonCreateError       = "CreateContainerError"
	reasonCompleted         = "Completed"
	reasonError             = "Error"
	reasonStartError        = "StartError"
	reasonStatusUnknown     = "ContainerStatusUnknown"
)

// containerView is what the agent knows of one container, from which its
// API status is built (convertToAPIContainerStatuses).
type containerView struct {
	Name         string
	Image        string
	ContainerID  string
	RestartCount int32
	// Exactly one of these describes the current state; none: waiting
	// with the default reason.
	Running    *v1.ContainerStateRunning
	Waiting    *v1.ContainerStateWaiting
	Terminated *v1.ContainerStateTerminated
	// The instance before; while waiting to restart, the one that exited.
	Last    *v1.ContainerStateTerminated
	Ready   bool
	Started bool
}

func (v containerView) status(defaultReason string) v1.ContainerStatus {
	s := v1.ContainerStatus{
		Name:         v.Name,
		Image:        v.Image,
		RestartCount: v.RestartCount,
		ContainerID:  v.ContainerID,
		Started:      new(bool),
	}
	if v.Last != nil {
		s.LastTerminationState.Terminated = v.Last.DeepCopy()
	}
	switch {
	case v.Running != nil:
		s.State.Running = v.Running.DeepCopy()
		s.Ready = v.Ready
		*s.Started = v.Started
	case v.Waiting != nil:
		s.State.Waiting = v.Waiting.DeepCopy()
	case v.Terminated != nil:
		s.State.Terminated = v.Terminated.DeepCopy()
		// A regular init container is ready once it has succeeded.
		s.Ready = v.Ready
	default:
		s.State.Waiting = &v1.ContainerStateWaiting{Reason: defaultReason}
	}
	if s.State.Waiting != nil {
		s.ContainerID = ""
	} else {
		s.ImageID = v.Image
	}
	return s
}

// shouldRestart is podutil.ContainerShouldRestart without restart rules:
// the container's own restartPolicy, else the pod's.
func shouldRestart(c *v1.Container, spec *v1.PodSpec, exitCode int32) bool {
	policy := string(spec.RestartPolicy)
	if c.RestartPolicy != nil && *c.RestartPolicy != "" {
		policy = string(*c.RestartPolicy)
	}
	switch policy {
	case string(v1.RestartPolicyNever):
		return false
	case string(v1.RestartPolicyOnFailure):
		return exitCode != 0
	default:
		return true
	}
}

func findStatus(list []v1.ContainerStatus, name string) (v1.ContainerStatus, bool) {
	for _, s := range list {
		if s.Name == name {
			return s, true
		}
	}
	return v1.ContainerStatus{}, false
}

// podPhase is the kubelet's getPhase (pkg/kubelet/kubelet_pods.go) with
// ContainerRestartRules on, as in v1.37, for regular init containers and
// regular containers.
func podPhase(pod *v1.Pod, initStatuses, statuses []v1.ContainerStatus, podIsTerminal bool) v1.PodPhase {
	spec := &pod.Spec
	pendingInit, failedInitNotRestartable := 0, 0
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		s, ok := findStatus(initStatuses, c.Name)
		switch {
		case !ok, s.State.Running != nil:
			pendingInit++
		case s.State.Terminated != nil:
			if code := s.State.Terminated.ExitCode; code != 0 && !shouldRestart(c, spec, code) {
				failedInitNotRestartable++
			}
		case s.State.Waiting != nil && s.LastTerminationState.Terminated != nil:
			if code := s.LastTerminationState.Terminated.ExitCode; code != 0 && !shouldRestart(c, spec, code) {
				failedInitNotRestartable++
			}
		default:
			pendingInit++
		}
	}
	unknown, running, waiting, stopped, stoppedNotRestartable, succeeded := 0, 0, 0, 0, 0, 0
	for i := range spec.Containers {
		c := &spec.Containers[i]
		s, ok := findStatus(statuses, c.Name)
		switch {
		case !ok:
			unknown++
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			stopped++
			code := s.State.Terminated.ExitCode
			if !shouldRestart(c, spec, code) {
				stoppedNotRestartable++
			}
			if code == 0 {
				succeeded++
			}
		case s.State.Waiting != nil && s.LastTerminationState.Terminated != nil:
			stopped++
			if !shouldRestart(c, spec, s.LastTerminationState.Terminated.ExitCode) {
				stoppedNotRestartable++
			}
		case s.State.Waiting != nil:
			waiting++
		default:
			unknown++
		}
	}
	if failedInitNotRestartable > 0 {
		return v1.PodFailed
	}
	switch {
	case pendingInit > 0, waiting > 0:
		return v1.PodPending
	case running > 0 && unknown == 0:
		return v1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if podIsTerminal {
			if stopped == succeeded {
				return v1.PodSucceeded
			}
			return v1.PodFailed
		}
		if stopped != stoppedNotRestartable {
			return v1.PodRunning
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		return v1.PodFailed
	default:
		return v1.PodPending
	}
}

// kubeletConditions are the condition types the kubelet owns
// (pkg/kubelet/types/pod_status.go); others, DisruptionTarget among
// them, are kept as the API server has them.
var kubeletConditions = map[v1.PodConditionType]bool{
	v1.PodScheduled: true, v1.PodReady: true, v1.PodInitialized: true,
	v1.ContainersReady: true, v1.PodReadyToStartContainers: true,
	v1.PodResizeInProgress: true, v1.PodResizePending: true,
}

// podView is what the agent knows of a pod besides its containers.
type podView struct {
	HostIP        string
	PodIP         string
	SandboxReady  bool
	StartTime     *metav1.Time
	Init          []containerView
	Containers    []containerView
	PodIsTerminal bool // the pod is being (or has been) terminated
}

// buildPodStatus is the pod's API status (generateAPIPodStatus): the
// container statuses, the phase, the kubelet's conditions next to the
// conditions others own, the addresses. apiStatus is the pod's status as
// the API server has it.
func buildPodStatus(pod *v1.Pod, view podView, now metav1.Time) v1.PodStatus {
	api := pod.Status
	s := v1.PodStatus{
		HostIP:             view.HostIP,
		StartTime:          view.StartTime,
		QOSClass:           api.QOSClass,
		ObservedGeneration: pod.Generation,
	}
	if view.HostIP != "" {
		s.HostIPs = []v1.HostIP{{IP: view.HostIP}}
	}
	if view.PodIP != "" {
		s.PodIP = view.PodIP
		s.PodIPs = []v1.PodIP{{IP: view.PodIP}}
	} else if api.PodIP != "" {
		// Pod IPs never change once reported.
		s.PodIP, s.PodIPs = api.PodIP, api.PodIPs
	}
	defaultReason := reasonContainerCreating
	if len(pod.Spec.InitContainers) > 0 {
		defaultReason = reasonPodInitializing
	}
	for _, c := range view.Init {
		s.InitContainerStatuses = append(s.InitContainerStatuses, c.status(reasonPodInitializing))
	}
	for _, c := range view.Containers {
		s.ContainerStatuses = append(s.ContainerStatuses, c.status(defaultReason))
	}
	s.Phase = podPhase(pod, s.InitContainerStatuses, s.ContainerStatuses, view.PodIsTerminal)
	if api.Phase == v1.PodFailed || api.Phase == v1.PodSucceeded {
		// No transition out of a terminal phase.
		s.Phase = api.Phase
	}
	if view.PodIsTerminal {
		terminatePod(&s, pod)
	}
	if s.Phase == api.Phase {
		s.Reason, s.Message = api.Reason, api.Message
	}
	for _, c := range api.Conditions {
		if !kubeletConditions[c.Type] {
			s.Conditions = append(s.Conditions, c)
		}
	}
	all := append(append([]v1.ContainerStatus{}, s.InitContainerStatuses...), s.ContainerStatuses...)
	cond := func(t v1.PodConditionType, ok bool, reason, message string) v1.PodCondition {
		c := v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason, Message: message, ObservedGeneration: pod.Generation}
		if ok {
			c = v1.PodCondition{Type: t, Status: v1.ConditionTrue, ObservedGeneration: pod.Generation}
		}
		c.LastTransitionTime = now
		for _, o := range api.Conditions {
			if o.Type == t && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
		return c
	}
	s.Conditions = append(s.Conditions, cond(v1.PodReadyToStartContainers, view.SandboxReady, "", ""))
	ok, reason, msg := initializedCondition(pod, s.InitContainerStatuses, all, s.Phase)
	if ok && reason != "" {
		c := cond(v1.PodInitialized, true, "", "")
		c.Reason = reason
		s.Conditions = append(s.Conditions, c)
	} else {
		s.Conditions = append(s.Conditions, cond(v1.PodInitialized, ok, reason, msg))
	}
	ok, reason, msg = containersReadyCondition(pod, s.ContainerStatuses, s.Phase)
	readyOK, readyReason, readyMsg := ok, reason, msg
	if ok {
		readyOK, readyReason, readyMsg = readinessGates(pod, s.Conditions)
	}
	s.Conditions = append(s.Conditions, cond(v1.PodReady, readyOK, readyReason, readyMsg))
	s.Conditions = append(s.Conditions, cond(v1.ContainersReady, ok, reason, msg))
	s.Conditions = append(s.Conditions, cond(v1.PodScheduled, true, "", ""))
	return s
}

// terminatePod is the status manager's TerminatePod: once the pod has
// started a container, one not terminated is reported as lost; the phase
// becomes terminal.
func terminatePod(s *v1.PodStatus, pod *v1.Pod) {
	started := false
	for _, c := range s.ContainerStatuses {
		if c.State.Running != nil || c.State.Terminated != nil {
			started = true
		}
	}
	if started {
		for i := range s.ContainerStatuses {
			if s.ContainerStatuses[i].State.Terminated == nil {
				s.ContainerStatuses[i].State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
					Reason: reasonStatusUnknown, ExitCode: 137,
					Message: "The container could not be located when the pod was terminated",
				}}
				s.ContainerStatuses[i].Ready = false
			}
		}
	}
	if s.Phase == v1.PodPending || s.Phase == v1.PodRunning {
		s.Phase = v1.PodFailed
	}
}

// initializedCondition: generate.go's GeneratePodInitializedCondition.
func initializedCondition(pod *v1.Pod, initStatuses, all []v1.ContainerStatus, phase v1.PodPhase) (bool, string, string) {
	var unknown, incomplete []string
	for _, c := range pod.Spec.InitContainers {
		s, ok := findStatus(initStatuses, c.Name)
		if !ok {
			unknown = append(unknown, c.Name)
		} else if !s.Ready {
			incomplete = append(incomplete, c.Name)
		}
	}
	if phase == v1.PodSucceeded && len(unknown) == 0 {
		return true, "PodCompleted", ""
	}
	for _, c := range pod.Spec.Containers {
		if s, ok := findStatus(all, c.Name); ok && (s.State.Running != nil || s.State.Terminated != nil) {
			return true, "", ""
		}
	}
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unknown status: %s", unknown))
	}
	if len(incomplete) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with incomplete status: %s", incomplete))
	}
	if len(msgs) > 0 {
		return false, "ContainersNotInitialized", strings.Join(msgs, ", ")
	}
	return true, "", ""
}

// containersReadyCondition: generate.go's GenerateContainersReadyCondition.
func containersReadyCondition(pod *v1.Pod, statuses []v1.ContainerStatus, phase v1.PodPhase) (bool, string, string) {
	var unknown, unready []string
	for _, c := range pod.Spec.Containers {
		s, ok := findStatus(statuses, c.Name)
		if !ok {
			unknown = append(unknown, c.Name)
		} else if !s.Ready {
			unready = append(unready, c.Name)
		}
	}
	if phase == v1.PodSucceeded && len(unknown) == 0 {
		return false, "PodCompleted", ""
	}
	if phase == v1.PodFailed {
		return false, "PodFailed", ""
	}
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unknown status: %s", unknown))
	}
	if len(unready) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unready status: %s", unready))
	}
	if len(msgs) > 0 {
		return false, "ContainersNotReady", strings.Join(msgs, ", ")
	}
	return true, "", ""
}

func readinessGates(pod *v1.Pod, conditions []v1.PodCondition) (bool, string, string) {
	var msgs []string
	for _, g := range pod.Spec.ReadinessGates {
		var found *v1.PodCondition
		for i := range conditions {
			if conditions[i].Type == g.ConditionType {
				found = &conditions[i]
			}
		}
		if found == nil {
			msgs = append(msgs, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", string(g.ConditionType)))
		} else if found.Status != v1.ConditionTrue {
			msgs = append(msgs, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", string(g.ConditionType), found.Status))
		}
	}
	if len(msgs) > 0 {
		return false, "ReadinessGatesNotReady", strings.Join(msgs, ", ")
	}
	return true, "", ""
}

// terminatedState is how an exit is reported: Completed for 0, Error
// otherwise; a signal is 128+signal.
func terminatedState(id string, exitCode int32, started, finished time.Time, reason, message string) *v1.ContainerStateTerminated {
	if reason == "" {
		reason = reasonError
		if exitCode == 0 {
			reason = reasonCompleted
		}
	}
	return &v1.ContainerStateTerminated{
		ExitCode: exitCode, Reason: reason, Message: message,
		StartedAt: metav1.NewTime(started), FinishedAt: metav1.NewTime(finished),
		ContainerID: id,
	}
}
