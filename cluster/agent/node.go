package agent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// LeaseNamespace holds the nodes' heartbeat Leases.
const LeaseNamespace = "kube-node-lease"

// nodeRegistration keeps this agent's Node registered and Ready, and its
// Lease renewed, as the kubelet does (pkg/kubelet/kubelet_node_status.go,
// component-helpers/apimachinery/lease).
type nodeRegistration struct {
	client   kubernetes.Interface
	name     string
	hostIP   string
	podCIDR  string
	port     int32
	lease    time.Duration
	period   time.Duration
	nodeUID  string
	capacity v1.ResourceList
	info     v1.NodeSystemInfo
}

func newNodeRegistration(client kubernetes.Interface, cfg *Config, hostIP string) *nodeRegistration {
	return &nodeRegistration{
		client:   client,
		name:     cfg.NodeName,
		hostIP:   hostIP,
		podCIDR:  cfg.PodCIDR,
		port:     int32(cfg.Port),
		lease:    cfg.LeaseDuration,
		period:   cfg.StatusPeriod,
		capacity: machineCapacity(cfg.StateDir),
		info:     machineInfo(),
	}
}

// register creates the Node (or adopts the one there) and posts its status.
func (n *nodeRegistration) register(ctx context.Context) error {
	nodes := n.client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, n.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, err = nodes.Create(ctx, n.initialNode(), metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("registering node %s: %w", n.name, err)
	}
	n.nodeUID = string(node.UID)
	if node.Spec.PodCIDR == "" {
		// The kubelet leaves podCIDR to the node IPAM controller; with
		// none running, the agent records the CIDR it actually uses.
		node.Spec.PodCIDR = n.podCIDR
		node.Spec.PodCIDRs = []string{n.podCIDR}
		if node, err = nodes.Update(ctx, node, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("setting podCIDR of node %s: %w", n.name, err)
		}
	}
	return n.postStatus(ctx)
}

func (n *nodeRegistration) initialNode() *v1.Node {
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.name,
			Labels: map[string]string{
				v1.LabelHostname:   n.name,
				v1.LabelOSStable:   runtime.GOOS,
				v1.LabelArchStable: runtime.GOARCH,
			},
		},
		Spec: v1.NodeSpec{PodCIDR: n.podCIDR, PodCIDRs: []string{n.podCIDR}},
	}
}

// nodeStatus is the status the agent posts: always Ready, no pressure.
func (n *nodeRegistration) nodeStatus(old v1.NodeStatus, now metav1.Time) v1.NodeStatus {
	s := old.DeepCopy()
	s.Capacity = n.capacity
	s.Allocatable = n.capacity
	s.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: n.hostIP}}
	s.DaemonEndpoints.KubeletEndpoint.Port = n.port
	s.NodeInfo = n.info
	s.Phase = ""
	want := []v1.NodeCondition{
		{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: v1.NodeDiskPressure, Status: v1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: v1.NodePIDPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
	}
	for i := range want {
		c := &want[i]
		c.LastHeartbeatTime = now
		c.LastTransitionTime = now
		for _, o := range old.Conditions {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	s.Conditions = want
	return *s
}

func (n *nodeRegistration) postStatus(ctx context.Context) error {
	nodes := n.client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, n.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	node.Status = n.nodeStatus(node.Status, metav1.Now())
	_, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// renewLease creates or renews the node's Lease, owned by the Node so the
// garbage collector removes it with the Node.
func (n *nodeRegistration) renewLease(ctx context.Context) error {
	leases := n.client.CoordinationV1().Leases(LeaseNamespace)
	now := metav1.NowMicro()
	seconds := int32(n.lease / time.Second)
	lease, err := leases.Get(ctx, n.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Namespace: LeaseNamespace},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       &n.name,
				LeaseDurationSeconds: &seconds,
				RenewTime:            &now,
			},
		}
		if n.nodeUID != "" {
			lease.OwnerReferences = []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: n.name, UID: types.UID(n.nodeUID),
			}}
		}
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.HolderIdentity = &n.name
	lease.Spec.LeaseDurationSeconds = &seconds
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// run renews the lease every quarter of its duration and posts the status
// every period, until ctx ends.
func (n *nodeRegistration) run(ctx context.Context) {
	renew := time.NewTicker(n.lease / 4)
	defer renew.Stop()
	status := time.NewTicker(n.period)
	defer status.Stop()
	if err := n.renewLease(ctx); err != nil {
		klog.ErrorS(err, "renewing node lease")
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			if err := n.renewLease(ctx); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "renewing node lease")
			}
		case <-status.C:
			if err := n.postStatus(ctx); err != nil && ctx.Err() == nil {
				klog.ErrorS(err, "posting node status")
			}
		}
	}
}

// machineCapacity: the machine's CPUs and memory, the state directory's
// file system, and the kubelet's default 110 pods.
func machineCapacity(stateDir string) v1.ResourceList {
	list := v1.ResourceList{
		v1.ResourceCPU:  *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		v1.ResourcePods: *resource.NewQuantity(110, resource.DecimalSI),
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		list[v1.ResourceMemory] = *resource.NewQuantity(int64(si.Totalram)*int64(si.Unit), resource.BinarySI)
	}
	var fs unix.Statfs_t
	dir := stateDir
	for dir != "/" && dir != "." {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		dir = parentDir(dir)
	}
	if unix.Statfs(dir, &fs) == nil {
		list[v1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(fs.Blocks)*fs.Bsize, resource.BinarySI)
	}
	return list
}

func parentDir(p string) string {
	i := strings.LastIndex(strings.TrimRight(p, "/"), "/")
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func machineInfo() v1.NodeSystemInfo {
	var u unix.Utsname
	_ = unix.Uname(&u)
	read := func(path string) string {
		b, _ := os.ReadFile(path)
		return strings.TrimSpace(string(b))
	}
	osImage := "Linux"
	for _, line := range strings.Split(read("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			osImage = strings.Trim(v, `"`)
		}
	}
	return v1.NodeSystemInfo{
		MachineID:               read("/etc/machine-id"),
		SystemUUID:              read("/sys/class/dmi/id/product_uuid"),
		BootID:                  read("/proc/sys/kernel/random/boot_id"),
		KernelVersion:           unix.ByteSliceToString(u.Release[:]),
		OSImage:                 osImage,
		ContainerRuntimeVersion: "bodywork-node-agent://" + KubeletVersion,
		KubeletVersion:          KubeletVersion,
		OperatingSystem:         runtime.GOOS,
		Architecture:            runtime.GOARCH,
	}
}
