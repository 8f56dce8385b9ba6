package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// createSandbox gives the pod what its containers share: a network
// namespace with an address (unless hostNetwork), the kubelet-managed
// /etc/hosts, /etc/resolv.conf for its DNS policy, and its volumes.
// What succeeded is kept when a later step fails; the next sync retries.
func (w *podWorker) createSandbox(ctx context.Context, pod *v1.Pod) error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	if pod.Spec.HostNetwork {
		w.podIP = w.a.hostIP
	} else if w.net == nil {
		n, err := w.a.net.addPod(string(pod.UID), pod.Status.PodIP)
		if err != nil {
			w.a.event(pod, v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
			return err
		}
		w.mu.Lock()
		w.net, w.podIP = n, n.IP
		w.mu.Unlock()
	}
	hosts := filepath.Join(w.dir, "etc-hosts")
	content, err := hostsFile(pod, w.podIP, w.a.cfg.Domain)
	if err == nil {
		err = os.WriteFile(hosts, content, 0o644)
	}
	if err != nil {
		return err
	}
	w.etcMounts = []bindMount{{Source: hosts, Target: "/etc/hosts"}}
	if resolv, ok := resolvConf(pod, w.a.cfg.ClusterDNS, w.a.cfg.Domain, hostSearches()); ok {
		path := filepath.Join(w.dir, "resolv.conf")
		if err := os.WriteFile(path, []byte(resolv), 0o644); err != nil {
			return err
		}
		if target, err := filepath.EvalSymlinks("/etc/resolv.conf"); err == nil {
			w.etcMounts = append(w.etcMounts, bindMount{Source: path, Target: target})
		}
	}
	vols := &podVolumes{client: w.a.client, pod: pod, dir: w.dir,
		addrs: podAddresses{PodIP: w.podIP, HostIP: w.a.hostIP}}
	if err := vols.setUp(ctx); err != nil {
		w.a.event(pod, v1.EventTypeWarning, "FailedMount", "%v", err)
		return err
	}
	w.vols = vols
	w.mu.Lock()
	w.sandboxReady = true
	w.mu.Unlock()
	return nil
}

// hostsFile is the kubelet's managed hosts file (managedHostsFileContent,
// or nodeHostsFileContent for host-network pods).
func hostsFile(pod *v1.Pod, podIP, domain string) ([]byte, error) {
	var b bytes.Buffer
	if pod.Spec.HostNetwork {
		host, err := os.ReadFile("/etc/hosts")
		if err != nil {
			return nil, err
		}
		b.WriteString("# Kubernetes-managed hosts file (host network).\n")
		b.Write(host)
	} else {
		b.WriteString("# Kubernetes-managed hosts file.\n")
		b.WriteString("127.0.0.1\tlocalhost\n")
		b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
		b.WriteString("fe00::0\tip6-localnet\n")
		b.WriteString("fe00::0\tip6-mcastprefix\n")
		b.WriteString("fe00::1\tip6-allnodes\n")
		b.WriteString("fe00::2\tip6-allrouters\n")
		name := podHostname(pod)
		if pod.Spec.Subdomain != "" {
			fmt.Fprintf(&b, "%s\t%s.%s.%s.svc.%s\t%s\n", podIP, name, pod.Spec.Subdomain, pod.Namespace, domain, name)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", podIP, name)
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes(), nil
}

// resolvConf is the pod's resolv.conf for its DNS policy
// (pkg/kubelet/network/dns): ClusterFirst (for a host-network pod only
// ClusterFirstWithHostNet) searches the namespace's, the cluster's and
// the host's domains and asks the cluster DNS, ndots 5; None uses
// dnsConfig only; Default, or no cluster DNS, keeps the host's file
// (false).
func resolvConf(pod *v1.Pod, clusterDNS, domain string, hostSearch []string) (string, bool) {
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = v1.DNSClusterFirst
	}
	var servers, searches []string
	options := []string{}
	switch {
	case policy == v1.DNSNone:
	case clusterDNS == "" || policy == v1.DNSDefault:
		return "", false
	case policy == v1.DNSClusterFirst && pod.Spec.HostNetwork:
		return "", false
	default:
		servers = []string{clusterDNS}
		searches = append([]string{pod.Namespace + ".svc." + domain, "svc." + domain, domain}, hostSearch...)
		options = []string{"ndots:5"}
	}
	if cfg := pod.Spec.DNSConfig; cfg != nil {
		servers = append(servers, cfg.Nameservers...)
		searches = append(searches, cfg.Searches...)
		for _, o := range cfg.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			options = append(options, opt)
		}
	}
	var b strings.Builder
	if len(searches) > 0 {
		b.WriteString("search " + strings.Join(searches, " ") + "\n")
	}
	for _, s := range servers {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(options) > 0 {
		b.WriteString("options " + strings.Join(options, " ") + "\n")
	}
	return b.String(), true
}

func hostSearches() []string {
	b, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[0] == "search" || f[0] == "domain") {
			out = append(out, f[1:]...)
		}
	}
	return out
}
