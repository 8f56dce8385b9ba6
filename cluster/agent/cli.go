package agent

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// Main is the agent's command line: it runs until SIGTERM or SIGINT, or
// with --cleanup removes what an agent with the same flags left behind.
// newClient builds the API client from --kubeconfig. It returns the exit
// status.
func Main(args []string, newClient func(kubeconfig string) (kubernetes.Interface, error)) int {
	fs := flag.NewFlagSet("bodywork-node-agent", flag.ContinueOnError)
	var cfg Config
	var cleanup bool
	fs.StringVar(&cfg.NodeName, "node-name", "bodywork-node", "the Node this agent registers and runs the pods of")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "credentials for the API server (the node's: system:node:NAME in system:nodes)")
	fs.StringVar(&cfg.StateDir, "state-dir", "/run/bodywork-node-agent", "pod directories (scratch, volumes, logs); removed when the agent stops")
	fs.StringVar(&cfg.Bridge, "bridge", "bw-br0", "the Linux bridge pods are attached to")
	fs.StringVar(&cfg.PodCIDR, "pod-cidr", "10.244.0.0/24", "pod addresses; the host's end of the bridge (the node's InternalIP) gets the first")
	fs.StringVar(&cfg.NamePrefix, "name-prefix", "bwa", "prefix of the network namespaces and veths the agent creates")
	fs.StringVar(&cfg.Image, "image", DefaultImage, "the one image that runs (on the host, as is); any other fails to pull")
	fs.StringVar(&cfg.BinDir, "bin-dir", "", "directory put first on the containers' PATH (the checkout's bodywork binary)")
	fs.Func("image-env", "KEY=VALUE of the image's own environment (a Dockerfile's ENV), under the pod's env; repeatable", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", s)
		}
		if cfg.ImageEnv == nil {
			cfg.ImageEnv = map[string]string{}
		}
		cfg.ImageEnv[k] = v
		return nil
	})
	fs.IntVar(&cfg.Port, "port", 10250, "the kubelet's HTTPS port on the node's InternalIP (container logs); 0 picks one, -1 none")
	fs.StringVar(&cfg.TLSCert, "tls-cert-file", "", "serving certificate of that port (self-signed when empty)")
	fs.StringVar(&cfg.TLSKey, "tls-private-key-file", "", "its key")
	fs.StringVar(&cfg.ClientCA, "client-ca-file", "", "when set, clients must present a certificate it signed (the API server's --kubelet-client-certificate)")
	fs.StringVar(&cfg.ClusterDNS, "cluster-dns", "", "nameserver of dnsPolicy ClusterFirst pods; empty: the host's resolv.conf")
	fs.StringVar(&cfg.Domain, "cluster-domain", "cluster.local", "the cluster's DNS domain")
	fs.BoolVar(&cleanup, "cleanup", false, "remove what an agent with these flags left (processes, network namespaces, veths, bridge, mount points, state) and exit")
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.Func("v", "log verbosity", func(s string) error { return klogFlags.Set("v", s) })
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bodywork-node-agent: must run as root (network namespaces, bridges, mounts)")
		return 1
	}
	if cleanup {
		for _, what := range Cleanup(cfg) {
			fmt.Println("removed", what)
		}
		return 0
	}
	if cfg.Kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "bodywork-node-agent: --kubeconfig is required")
		return 2
	}
	client, err := newClient(cfg.Kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bodywork-node-agent: %v\n", err)
		return 1
	}
	a, err := New(cfg, client)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bodywork-node-agent: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "bodywork-node-agent: %v\n", err)
		return 1
	}
	return 0
}
