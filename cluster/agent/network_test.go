package agent

import "testing"

func TestAddressesAreAllocatedInTheRangeAndAPodKeepsItsOwn(t *testing.T) {
	n, err := newPodNetwork(&Config{PodCIDR: "10.244.7.0/29"})
	if err != nil {
		t.Fatal(err)
	}
	if n.gateway.String() != "10.244.7.1" {
		t.Errorf("gateway %s", n.gateway)
	}
	var got []string
	for {
		ip, err := n.allocate("")
		if err != nil {
			break
		}
		got = append(got, ip)
	}
	want := []string{"10.244.7.2", "10.244.7.3", "10.244.7.4", "10.244.7.5", "10.244.7.6"}
	if len(got) != len(want) || got[0] != want[0] || got[4] != want[4] {
		t.Fatalf("allocated %v, want %v", got, want)
	}
	n.release("10.244.7.4")
	n.release("10.244.7.5")
	if ip, _ := n.allocate("10.244.7.5"); ip != "10.244.7.5" {
		t.Errorf("the address a pod had: %s", ip)
	}
	for _, bad := range []string{"10.244.7.1", "10.244.7.7", "10.244.8.9", "nonsense"} {
		n.release("10.244.7.4")
		if ip, _ := n.allocate(bad); ip != "10.244.7.4" {
			t.Errorf("allocate(%q) = %s", bad, ip)
		}
	}
}

// TestTheBridgeIsRemovedOnlyIfTheAgentMadeIt: scripts/cluster makes the
// bridge (the API server listens on its address) before the agent starts;
// the agent leaves it, and takes back only what it added.
func TestTheBridgeIsRemovedOnlyIfTheAgentMadeIt(t *testing.T) {
	requireRoot(t)
	cases := []struct {
		name        string
		pre         [][]string
		wantBridge  bool
		wantAddress bool
	}{
		{"made by the agent", nil, false, false},
		{"found with its address", [][]string{{"link", "add", "bwt-br9", "type", "bridge"}, {"addr", "add", "10.244.249.1/24", "dev", "bwt-br9"}}, true, true},
		{"found without an address", [][]string{{"link", "add", "bwt-br9", "type", "bridge"}}, true, false},
	}
	for _, tc := range cases {
		state := t.TempDir()
		for _, args := range tc.pre {
			if err := ipCmd(args...); err != nil {
				t.Fatal(err)
			}
		}
		n, err := newPodNetwork(&Config{PodCIDR: "10.244.249.0/24", Bridge: "bwt-br9", NamePrefix: "bwt", StateDir: state})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.setUp(); err != nil {
			t.Fatal(err)
		}
		if !hasAddress("bwt-br9", n.gateway) {
			t.Errorf("%s: the bridge has no address after setUp", tc.name)
		}
		removed := cleanupNetwork("bwt", "bwt-br9", state)
		if linkExists("bwt-br9") != tc.wantBridge || hasAddress("bwt-br9", n.gateway) != tc.wantAddress {
			t.Errorf("%s: after cleanup bridge %v address %v (removed %v)", tc.name, linkExists("bwt-br9"), hasAddress("bwt-br9", n.gateway), removed)
		}
		if linkExists("bwt-br9") {
			_ = ipCmd("link", "delete", "bwt-br9")
		}
	}
}
