//go:build e2e

// Package e2e checks a running `scripts/cluster up` cluster from outside:
// ClusterIP Services through kube-proxy and names through the cluster DNS,
// from the host and from a network namespace set up as a pod's is (on the
// bridge, with a pod's resolv.conf).
//
// Run it, as root, with the cluster up:
//
//	cd cluster && go test -tags e2e ./e2e/
//
// or on a cluster of their own, up and down around them:
// scripts/cluster-test. workloads_test.go runs pods on the node agent.
//
// CLUSTER_KUBECONFIG names the cluster-admin kubeconfig (default:
// target/cluster/kubeconfig in the repository); the cluster's binary is
// bin/kubecluster beside it. Without a reachable cluster every test fails:
// none is skipped.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// The network plan of scripts/cluster (cluster/README.md).
const (
	hostIP    = "10.244.0.1"
	bridge    = "bw-br0"
	apiIP     = "10.96.0.1"
	dnsIP     = "10.96.0.10"
	domain    = "cluster.local"
	testPodIP = "10.244.0.250" // the pod-like namespace's address, far from the agent's first ones
	nodeName  = "bodywork-node"
)

type cluster struct {
	client     kubernetes.Interface
	kubeconfig string
	bin        string // DIR/bin/kubecluster
}

// kubeconfigPath is CLUSTER_KUBECONFIG, else target/cluster/kubeconfig in
// the repository.
func kubeconfigPath() (string, error) {
	if kubeconfig := os.Getenv("CLUSTER_KUBECONFIG"); kubeconfig != "" {
		return kubeconfig, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return filepath.Join(wd, "..", "..", "target", "cluster", "kubeconfig"), nil
}

func connect(t *testing.T) *cluster {
	t.Helper()
	kubeconfig, err := kubeconfigPath()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kubeconfig); err != nil {
		t.Fatalf("no cluster: %v (start one with `scripts/cluster up`, or set CLUSTER_KUBECONFIG)", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", kubeconfig, err)
	}
	cfg.Timeout = 10 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("cluster of %s not reachable: %v", kubeconfig, err)
	}
	t.Logf("server %s at %s", v.GitVersion, cfg.Host)
	return &cluster{client: client, kubeconfig: kubeconfig, bin: filepath.Join(filepath.Dir(kubeconfig), "bin", "kubecluster")}
}

// namespace creates a namespace for one test and deletes it at the end.
func (c *cluster) namespace(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	ns, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-net-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
	})
	return ns.Name
}

// hostService serves HTTP on hostIP (the host's address on the pod bridge)
// and publishes it as a selector-less ClusterIP Service NAME with a manual
// EndpointSlice, as the cluster's kube-dns Service is. It returns the
// Service's ClusterIP and the body the server answers.
func (c *cluster) hostService(t *testing.T, ns, name string) (clusterIP, body string) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(hostIP, "0"))
	if err != nil {
		t.Fatalf("listen on %s (is the bridge %s there?): %v", hostIP, bridge, err)
	}
	return c.service(t, ns, name, l, hostIP)
}

// service serves HTTP on l and publishes it as a selector-less ClusterIP
// Service NAME whose manual EndpointSlice has the address endpoint, on the
// node (as the EndpointSlice controller writes a pod's: kube-proxy treats
// such an endpoint as local, which a pod reaching itself through its Service
// needs).
func (c *cluster) service(t *testing.T, ns, name string, l net.Listener, endpoint string) (clusterIP, body string) {
	t.Helper()
	body = fmt.Sprintf("hello from %s/%s\n", ns, name)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, body)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	port := int32(l.Addr().(*net.TCPAddr).Port)

	ctx := context.Background()
	svc, err := c.client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(port)}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.client.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: name + "-host",
			Labels: map[string]string{
				discoveryv1.LabelServiceName: name,
				discoveryv1.LabelManagedBy:   "e2e.bodywork.dev",
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{endpoint},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
			NodeName:   ptr.To(nodeName),
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP, body
}

// eventually retries f every 200 ms until it returns nil or the time is up.
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func get(url string) (string, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// clusterResolver asks the cluster DNS Service, as a pod's resolver does.
var clusterResolver = &net.Resolver{
	PreferGo: true,
	Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(dnsIP, "53"))
	},
}

func lookup(name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return clusterResolver.LookupHost(ctx, name)
}

// TestHostReachesClusterIP: a selector-less ClusterIP Service whose manual
// EndpointSlice points at a server on the host answers through its ClusterIP
// from the host (kube-proxy's rules for locally sent traffic), and the
// cluster DNS answers its name, also over TCP.
func TestHostReachesClusterIP(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t)
	ip, body := c.hostService(t, ns, "echo")

	eventually(t, 30*time.Second, "GET http://"+ip+"/ from the host", func() error {
		got, err := get("http://" + ip + "/")
		if err == nil && got != body {
			err = fmt.Errorf("answered %q, want %q", got, body)
		}
		return err
	})

	fqdn := "echo." + ns + ".svc." + domain + "."
	eventually(t, 30*time.Second, "A record of "+fqdn, func() error {
		addrs, err := lookup(fqdn)
		if err == nil && (len(addrs) != 1 || addrs[0] != ip) {
			err = fmt.Errorf("answered %v, want [%s]", addrs, ip)
		}
		return err
	})
	// The API server advertises its bridge address: the kubernetes Service
	// has a real endpoint.
	slices, err := c.client.DiscoveryV1().EndpointSlices("default").List(context.Background(),
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kubernetes"})
	if err != nil || len(slices.Items) != 1 || len(slices.Items[0].Endpoints) != 1 ||
		slices.Items[0].Endpoints[0].Addresses[0] != hostIP {
		t.Errorf("kubernetes Service endpoints: %v %+v; want %s", err, slices, hostIP)
	}
	// The API server's own Service, as pods find it.
	addrs, err := lookup("kubernetes.default.svc." + domain + ".")
	if err != nil || len(addrs) != 1 || addrs[0] != apiIP {
		t.Errorf("kubernetes.default.svc.%s: %v, %v; want [%s]", domain, addrs, err, apiIP)
	}
	// Over TCP too (kube-dns' dns-tcp port).
	tcp := exec.Command(c.bin, "dnsquery", "--tcp", "--server", dnsIP+":53", fqdn)
	if out, err := tcp.CombinedOutput(); err != nil || !strings.Contains(string(out), ip) {
		t.Errorf("DNS over TCP for %s: %v: %s", fqdn, err, out)
	}
	// A name that is not there is NXDOMAIN, not a time-out.
	_, err = lookup("missing." + ns + ".svc." + domain + ".")
	var dnsErr *net.DNSError
	if err == nil || !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Errorf("missing.%s.svc.%s: want not found, got %v", ns, domain, err)
	}
}

// TestPodNetnsReachesServices: a network namespace wired as the node agent
// wires a pod's (a veth on the bridge, a pod address, the default route via
// the host, a pod's resolv.conf) resolves NAME, NAME.NS and the full name
// with the system's resolver (getent, glibc, through the search path and
// ndots:5), reaches the Service by ClusterIP and by name, and reaches the API
// server through 10.96.0.1:443.
func TestPodNetnsReachesServices(t *testing.T) {
	c := connect(t)
	ns := c.namespace(t)
	ip, body := c.hostService(t, ns, "echo")
	netns := podNetns(t, ns)

	run := func(args ...string) (string, error) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, name := range []string{"echo", "echo." + ns, "echo." + ns + ".svc", "echo." + ns + ".svc." + domain} {
		eventually(t, 30*time.Second, "getent hosts "+name+" in the pod namespace", func() error {
			out, err := run("getent", "hosts", name)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if f := strings.Fields(out); len(f) == 0 || f[0] != ip {
				return fmt.Errorf("answered %q, want %s", out, ip)
			}
			return nil
		})
	}
	if out, err := run("getent", "hosts", "kubernetes.default"); err != nil || !strings.HasPrefix(out, apiIP+" ") {
		t.Errorf("getent hosts kubernetes.default: %v: %q", err, out)
	}
	// HTTP through the ClusterIP, by address and by name (curl uses glibc's resolver).
	for _, url := range []string{"http://" + ip + "/", "http://echo/", "http://echo." + ns + "/"} {
		eventually(t, 30*time.Second, "GET "+url+" from the pod namespace", func() error {
			out, err := run("curl", "-sS", "--max-time", "3", url)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if out != body {
				return fmt.Errorf("answered %q, want %q", out, body)
			}
			return nil
		})
	}
	// The API server through the kubernetes Service, as in-cluster clients
	// reach it (KUBERNETES_SERVICE_HOST=10.96.0.1, port 443).
	if out, err := run(c.bin, "probe", "--timeout=10s", "--kubeconfig="+c.kubeconfig, "https://"+apiIP+":443/readyz"); err != nil {
		t.Errorf("API server at %s:443 from the pod namespace: %v: %s", apiIP, err, out)
	}

	// The other way: a server in the pod namespace behind a ClusterIP,
	// reached from the host (DNAT to a pod address, across the bridge).
	l, err := listenInNetns(netns, net.JoinHostPort(testPodIP, "0"))
	if err != nil {
		t.Fatalf("listen in %s: %v", netns, err)
	}
	podSvcIP, podBody := c.service(t, ns, "in-pod", l, testPodIP)
	eventually(t, 30*time.Second, "GET http://"+podSvcIP+"/ (a pod's server) from the host", func() error {
		got, err := get("http://" + podSvcIP + "/")
		if err == nil && got != podBody {
			err = fmt.Errorf("answered %q, want %q", got, podBody)
		}
		return err
	})

	// And from the pod itself through its own Service (hairpin). DNATed
	// back to the pod's own address, the frame is bridged (br_netfilter)
	// out of the port it came in by, which the bridge does only in hairpin
	// mode, as a kubelet sets it (--hairpin-mode=hairpin-veth); kube-proxy
	// masquerades it (its hairpin-connections set, for local endpoints) so
	// that the reply comes back through the host too.
	if err := os.WriteFile("/sys/class/net/"+podVeth+"/brport/hairpin_mode", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "GET http://in-pod/ from the pod behind it", func() error {
		out, err := run("curl", "-sS", "--max-time", "3", "http://in-pod/")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if out != podBody {
			return fmt.Errorf("answered %q, want %q", out, podBody)
		}
		return nil
	})
}

// podVeth is the host's end of podNetns' veth.
const podVeth = "bwae2e0"

// podNetns makes a network namespace wired as a pod's, removed at the end.
func podNetns(t *testing.T, ns string) string {
	t.Helper()
	// The node agent's prefix, so `scripts/cluster down` sweeps it if a run dies.
	name, hostEnd, podEnd := "bwa-e2e", podVeth, "bwae2e1"
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// Left over from an earlier run that died.
	_ = exec.Command("ip", "netns", "delete", name).Run()
	_ = exec.Command("ip", "link", "delete", hostEnd).Run()

	etc := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "delete", hostEnd).Run()
		_ = exec.Command("ip", "netns", "delete", name).Run()
		os.RemoveAll(etc)
	})
	// What a pod with dnsPolicy ClusterFirst gets from a kubelet.
	resolv := fmt.Sprintf("search %s.svc.%s svc.%s %s\nnameserver %s\noptions ndots:5\n", ns, domain, domain, domain, dnsIP)
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(resolv), 0o644); err != nil {
		t.Fatal(err)
	}
	ip("netns", "add", name)
	ip("link", "add", hostEnd, "type", "veth", "peer", "name", podEnd, "netns", name)
	ip("link", "set", hostEnd, "master", bridge, "up")
	ip("-n", name, "link", "set", "lo", "up")
	ip("-n", name, "addr", "add", testPodIP+"/24", "dev", podEnd)
	ip("-n", name, "link", "set", podEnd, "up")
	ip("-n", name, "route", "add", "default", "via", hostIP)
	return name
}

// listenInNetns listens on addr inside the network namespace NAME: the
// socket is made by a thread switched into that namespace, and stays there.
func listenInNetns(name, addr string) (net.Listener, error) {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + name)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	l, lerr := net.Listen("tcp", addr)
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// This thread stays in the wrong namespace: leave it locked, so it
		// ends with this goroutine.
		return nil, fmt.Errorf("back to the host's network namespace: %v", err)
	}
	runtime.UnlockOSThread()
	return l, lerr
}
