package agent

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestNodeIsRegisteredReadyWithItsLease(t *testing.T) {
	client := fake.NewClientset()
	// The fake API server gives no UIDs; the real one does.
	client.PrependReactor("create", "nodes", func(action k8stesting.Action) (bool, runtime.Object, error) {
		action.(k8stesting.CreateAction).GetObject().(*v1.Node).UID = "node-uid"
		return false, nil, nil
	})
	cfg := &Config{NodeName: "n1", PodCIDR: "10.244.9.0/24", Port: 10250, StateDir: t.TempDir()}
	cfg.Defaults()
	reg := newNodeRegistration(client, cfg, "10.244.9.1")
	ctx := context.Background()
	if err := reg.register(ctx); err != nil {
		t.Fatal(err)
	}
	node, err := client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if node.Labels[v1.LabelHostname] != "n1" || node.Labels[v1.LabelOSStable] != "linux" {
		t.Errorf("labels: %v", node.Labels)
	}
	if node.Spec.PodCIDR != "10.244.9.0/24" {
		t.Errorf("podCIDR %q", node.Spec.PodCIDR)
	}
	ready := false
	for _, c := range node.Status.Conditions {
		if c.Type == v1.NodeReady {
			ready = c.Status == v1.ConditionTrue && c.Reason == "KubeletReady"
		} else if c.Status != v1.ConditionFalse {
			t.Errorf("condition %s is %s", c.Type, c.Status)
		}
	}
	if !ready {
		t.Errorf("not Ready: %+v", node.Status.Conditions)
	}
	if got := node.Status.Addresses; len(got) != 1 || got[0].Type != v1.NodeInternalIP || got[0].Address != "10.244.9.1" {
		t.Errorf("addresses %v", got)
	}
	if node.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("kubelet port %d", node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
	if node.Status.Allocatable.Cpu().IsZero() || node.Status.Capacity.Pods().Value() != 110 {
		t.Errorf("capacity %v", node.Status.Capacity)
	}
	if node.Status.NodeInfo.KubeletVersion != KubeletVersion {
		t.Errorf("kubelet version %q", node.Status.NodeInfo.KubeletVersion)
	}

	if err := reg.renewLease(ctx); err != nil {
		t.Fatal(err)
	}
	lease, err := client.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := lease.Spec.RenewTime.Time
	if *lease.Spec.HolderIdentity != "n1" || *lease.Spec.LeaseDurationSeconds != 40 {
		t.Errorf("lease %+v", lease.Spec)
	}
	if len(lease.OwnerReferences) != 1 || lease.OwnerReferences[0].Kind != "Node" || lease.OwnerReferences[0].UID != "node-uid" {
		t.Errorf("lease owner %v", lease.OwnerReferences)
	}
	time.Sleep(2 * time.Millisecond)
	if err := reg.renewLease(ctx); err != nil {
		t.Fatal(err)
	}
	lease, _ = client.CoordinationV1().Leases(LeaseNamespace).Get(ctx, "n1", metav1.GetOptions{})
	if !lease.Spec.RenewTime.After(first) {
		t.Errorf("lease not renewed: %v then %v", first, lease.Spec.RenewTime)
	}

	// A second registration (an agent restarted) adopts the Node, and a
	// transition time stays while the condition holds.
	before := node.Status.Conditions
	if err := reg.register(ctx); err != nil {
		t.Fatal(err)
	}
	node, _ = client.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	for i, c := range node.Status.Conditions {
		if !c.LastTransitionTime.Equal(&before[i].LastTransitionTime) {
			t.Errorf("%s changed its transition time", c.Type)
		}
	}
}
