package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"
)

// DefaultImage is the one image the agent runs: bodywork-kube's
// DEFAULT_IMAGE (crates/bodywork-kube/src/manifests/images.rs) at the
// workspace's version. Any other image fails to pull.
const DefaultImage = "ghcr.io/bodywork-ml/bodywork-rs:0.1.0"

// KubeletVersion is what the Node reports: the control plane's release.
const KubeletVersion = "v1.37.2"

// Config is everything the agent is told on its command line.
type Config struct {
	NodeName   string // the Node this agent is
	Kubeconfig string // credentials: the node's identity (system:node:NAME)

	StateDir   string // pod directories: scratch, volumes, logs
	Bridge     string // the Linux bridge pods are attached to
	PodCIDR    string // pod addresses; the bridge (the host's end) gets the first
	NamePrefix string // network namespaces and veths are named PREFIX...

	Image  string // the image that maps to the host
	BinDir string // put first on PATH in containers (the checkout's bodywork)
	// ImageEnv is the image's own environment (a Dockerfile's ENV): every
	// container of the image gets it, under what its pod spec sets.
	ImageEnv map[string]string

	Port       int    // the kubelet's HTTPS port (logs)
	TLSCert    string // serving certificate; self-signed when empty
	TLSKey     string
	ClientCA   string // when set, clients (the API server) must present a cert it signed
	ClusterDNS string // nameserver for dnsPolicy ClusterFirst pods; the host's resolv.conf when empty
	Domain     string // cluster domain, for search paths

	LeaseDuration time.Duration // node lease duration (40 s)
	StatusPeriod  time.Duration // how often the Node status is posted (1 min)
}

// Defaults fills in what was left empty.
func (c *Config) Defaults() {
	if c.NodeName == "" {
		c.NodeName = "bodywork-node"
	}
	if c.StateDir == "" {
		c.StateDir = "/run/bodywork-node-agent"
	}
	if c.Bridge == "" {
		c.Bridge = "bw-br0"
	}
	if c.PodCIDR == "" {
		c.PodCIDR = "10.244.0.0/24"
	}
	if c.NamePrefix == "" {
		c.NamePrefix = "bwa"
	}
	if c.Image == "" {
		c.Image = DefaultImage
	}
	if c.Port == 0 {
		c.Port = 10250
	}
	if c.Domain == "" {
		c.Domain = "cluster.local"
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration = 40 * time.Second
	}
	if c.StatusPeriod == 0 {
		c.StatusPeriod = time.Minute
	}
}

// Validate reports the first thing that cannot work, in one line.
func (c *Config) Validate() error {
	_, cidr, err := net.ParseCIDR(c.PodCIDR)
	if err != nil || cidr.IP.To4() == nil {
		return fmt.Errorf("--pod-cidr %q: an IPv4 CIDR is needed", c.PodCIDR)
	}
	if ones, _ := cidr.Mask.Size(); ones > 30 {
		return fmt.Errorf("--pod-cidr %q: too small for a bridge and a pod", c.PodCIDR)
	}
	if len(c.NamePrefix) > 4 {
		return fmt.Errorf("--name-prefix %q: at most 4 characters (interface names stop at 15)", c.NamePrefix)
	}
	if len(c.Bridge) > 15 {
		return fmt.Errorf("--bridge %q: interface names stop at 15 characters", c.Bridge)
	}
	if c.BinDir != "" {
		if _, err := os.Stat(c.BinDir); err != nil {
			return fmt.Errorf("--bin-dir: %v", err)
		}
		abs, err := filepath.Abs(c.BinDir)
		if err != nil {
			return err
		}
		c.BinDir = abs
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return fmt.Errorf("--tls-cert-file and --tls-private-key-file go together")
	}
	return nil
}
