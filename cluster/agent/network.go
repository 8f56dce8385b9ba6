package agent

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// podNetwork gives each pod a network namespace with one address on a
// Linux bridge whose own address (the first of the pod CIDR) is the host's
// end and the pods' default route: the CNI bridge plugin's model.
// Everything it creates is named after the prefix, so --cleanup finds it.
type podNetwork struct {
	bridge    string
	prefix    string
	cidr      *net.IPNet
	gateway   net.IP
	prefixLen int
	stateDir  string

	mu   sync.Mutex
	used map[string]bool
}

// sandboxNet is one pod's network: its namespace and address.
type sandboxNet struct {
	NetNS   string // name under /run/netns
	HostEnd string // the veth on the bridge
	IP      string
}

// NetNSPath is where `ip netns` keeps the namespace.
func (s *sandboxNet) NetNSPath() string { return "/run/netns/" + s.NetNS }

func newPodNetwork(cfg *Config) (*podNetwork, error) {
	_, cidr, err := net.ParseCIDR(cfg.PodCIDR)
	if err != nil {
		return nil, err
	}
	ones, _ := cidr.Mask.Size()
	return &podNetwork{
		bridge:    cfg.Bridge,
		prefix:    cfg.NamePrefix,
		cidr:      cidr,
		gateway:   nthIP(cidr, 1),
		prefixLen: ones,
		stateDir:  cfg.StateDir,
		used:      map[string]bool{},
	}, nil
}

func nthIP(cidr *net.IPNet, n uint32) net.IP {
	base := binary.BigEndian.Uint32(cidr.IP.To4())
	out := make(net.IP, 4)
	binary.BigEndian.PutUint32(out, base+n)
	return out
}

// ipCmd runs `ip ARGS...`, its error carrying ip's own message.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// The state files recording what setUp changed, for tearDown and --cleanup.
const (
	bridgeCreated = "bridge.created" // the agent created the bridge
	bridgeAddress = "bridge.address" // the agent gave a bridge it found its address
)

// setUp creates the bridge (or uses the one there, as scripts/cluster makes
// it before the API server listens on its address) with the host's
// address. What it changed is recorded so that tearDown and --cleanup
// undo exactly that: a bridge found is left, only an address given is
// taken. IPv4 forwarding (for pod -> ClusterIP -> pod) is left to whoever
// runs the Services (scripts/cluster): pods reach the host without it.
func (n *podNetwork) setUp() error {
	addr := fmt.Sprintf("%s/%d", n.gateway, n.prefixLen)
	if !linkExists(n.bridge) {
		if err := ipCmd("link", "add", "name", n.bridge, "type", "bridge"); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(n.stateDir, bridgeCreated), []byte(n.bridge+"\n"), 0o644); err != nil {
			return err
		}
	}
	if !hasAddress(n.bridge, n.gateway) {
		if err := ipCmd("addr", "add", addr, "dev", n.bridge); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(n.stateDir, bridgeCreated)); err != nil {
			if err := os.WriteFile(filepath.Join(n.stateDir, bridgeAddress), []byte(addr+"\n"), 0o644); err != nil {
				return err
			}
		}
	}
	if err := ipCmd("link", "set", n.bridge, "up"); err != nil {
		return err
	}
	return nil
}

func hasAddress(link string, ip net.IP) bool {
	i, err := net.InterfaceByName(link)
	if err != nil {
		return false
	}
	addrs, err := i.Addrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// undoBridge removes the bridge if the agent created it, else the address
// it gave the bridge, if it did.
func undoBridge(bridge, stateDir string) []string {
	var removed []string
	created := filepath.Join(stateDir, bridgeCreated)
	if _, err := os.Stat(created); err == nil {
		if linkExists(bridge) && ipCmd("link", "delete", bridge) == nil {
			removed = append(removed, "bridge "+bridge)
		}
		_ = os.Remove(created)
	}
	given := filepath.Join(stateDir, bridgeAddress)
	if b, err := os.ReadFile(given); err == nil {
		addr := strings.TrimSpace(string(b))
		if linkExists(bridge) && ipCmd("addr", "del", addr, "dev", bridge) == nil {
			removed = append(removed, "address "+addr+" of "+bridge)
		}
		_ = os.Remove(given)
	}
	return removed
}

// shortID: 8 hex digits naming a pod's interfaces (names stop at 15).
func shortID(uid string) string {
	sum := sha1.Sum([]byte(uid))
	return hex.EncodeToString(sum[:4])
}

// allocate takes the first free address, or want when it is free and in
// the range: a pod keeps the address its status already shows when an
// agent restarted.
func (n *podNetwork) allocate(want string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ip := net.ParseIP(want); ip != nil && n.cidr.Contains(ip) && !n.used[want] &&
		!ip.Equal(n.gateway) && !ip.Equal(n.cidr.IP) && !ip.Equal(nthIP(n.cidr, uint32(n.size()-1))) {
		n.used[want] = true
		return want, nil
	}
	for i := uint32(2); i < n.size()-1; i++ {
		ip := nthIP(n.cidr, i).String()
		if !n.used[ip] {
			n.used[ip] = true
			return ip, nil
		}
	}
	return "", fmt.Errorf("no address left in %s", n.cidr)
}

func (n *podNetwork) size() uint32 {
	ones, bits := n.cidr.Mask.Size()
	return uint32(1) << uint(bits-ones)
}

func (n *podNetwork) release(ip string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.used, ip)
}

// addPod creates the pod's namespace (with wantIP if it can): lo up, eth0 (a veth whose other end
// is on the bridge) with the pod's address, default route via the bridge.
func (n *podNetwork) addPod(uid, wantIP string) (*sandboxNet, error) {
	ip, err := n.allocate(wantIP)
	if err != nil {
		return nil, err
	}
	id := shortID(uid)
	s := &sandboxNet{NetNS: n.prefix + "-" + uid, HostEnd: n.prefix + "v" + id, IP: ip}
	peer := n.prefix + "p" + id
	steps := [][]string{
		{"netns", "add", s.NetNS},
		{"link", "add", s.HostEnd, "type", "veth", "peer", "name", peer, "netns", s.NetNS},
		{"link", "set", s.HostEnd, "master", n.bridge},
		{"link", "set", s.HostEnd, "up"},
		{"-n", s.NetNS, "link", "set", "lo", "up"},
		{"-n", s.NetNS, "link", "set", peer, "name", "eth0"},
		{"-n", s.NetNS, "addr", "add", fmt.Sprintf("%s/%d", ip, n.prefixLen), "dev", "eth0"},
		{"-n", s.NetNS, "link", "set", "eth0", "up"},
		{"-n", s.NetNS, "route", "add", "default", "via", n.gateway.String()},
	}
	for _, step := range steps {
		if err := ipCmd(step...); err != nil {
			n.removePod(s)
			return nil, err
		}
	}
	// A pod reaching itself through its own Service: kube-proxy DNATs the
	// frame back to the pod, and the bridge must send it out of the port it
	// came in by (the kubelet's --hairpin-mode=hairpin-veth). Without it the
	// connection times out.
	if err := setHairpin(s.HostEnd); err != nil {
		n.removePod(s)
		return nil, err
	}
	return s, nil
}

// setHairpin turns hairpin mode on for a bridge port, as the kubelet's
// hairpin-veth mode writes it (pkg/kubelet/network/hairpin).
func setHairpin(port string) error {
	path := "/sys/class/net/" + port + "/brport/hairpin_mode"
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("hairpin mode on %s: %w", port, err)
	}
	return nil
}

// removePod kills whatever still runs in the namespace, then removes it
// (which removes the veth pair) and frees the address.
func (n *podNetwork) removePod(s *sandboxNet) {
	killNetNS(s.NetNS)
	if _, err := os.Stat(s.NetNSPath()); err == nil {
		_ = ipCmd("netns", "delete", s.NetNS)
	}
	if linkExists(s.HostEnd) {
		_ = ipCmd("link", "delete", s.HostEnd)
	}
	n.release(s.IP)
}

// killNetNS sends SIGKILL to every process in the named namespace.
func killNetNS(name string) {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// tearDown undoes setUp.
func (n *podNetwork) tearDown() {
	undoBridge(n.bridge, n.stateDir)
}

// cleanupNetwork removes everything an agent with this prefix and state
// may have left: namespaces (and what runs in them), veths, the bridge
// (or its address) if it made it.
func cleanupNetwork(prefix, bridge, stateDir string) []string {
	var removed []string
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 || !strings.HasPrefix(f[0], prefix+"-") {
				continue
			}
			killNetNS(f[0])
			if ipCmd("netns", "delete", f[0]) == nil {
				removed = append(removed, "netns "+f[0])
			}
		}
	}
	if ifaces, err := net.Interfaces(); err == nil {
		for _, i := range ifaces {
			if strings.HasPrefix(i.Name, prefix+"v") || strings.HasPrefix(i.Name, prefix+"p") {
				if ipCmd("link", "delete", i.Name) == nil {
					removed = append(removed, "link "+i.Name)
				}
			}
		}
	}
	removed = append(removed, undoBridge(bridge, stateDir)...)
	return removed
}
