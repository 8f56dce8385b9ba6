package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// runPKI writes the cluster's certificates, keys and kubeconfigs into --dir.
// Keys and certificates that already exist are kept; kubeconfigs are always
// rewritten, since the API server's port changes from one `up` to the next.
func runPKI(args []string) int {
	fs := flag.NewFlagSet("pki", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory for the files (required)")
	server := fs.String("server", "", "API server URL for the kubeconfigs (required)")
	serviceCIDR := fs.String("service-cidr", "10.96.0.0/16", "service cluster IP range; its first address goes into the serving certificate")
	var extraIPs stringList
	fs.Var(&extraIPs, "ip", "extra IP address for the API server's serving certificate (repeatable)")
	var node nodeIdentity
	fs.StringVar(&node.name, "node-name", "", "if set, also write the node agent's files: its kubelet serving certificate (kubelet.crt) and its client certificate and kubeconfig as system:node:NAME in group system:nodes (node.kubeconfig)")
	fs.StringVar(&node.ip, "node-ip", "", "the node's address, in the kubelet serving certificate (with --node-name)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *server == "" {
		fmt.Fprintln(os.Stderr, "pki: --dir and --server are required")
		return 2
	}
	if err := writePKI(*dir, *server, *serviceCIDR, extraIPs, node); err != nil {
		fmt.Fprintf(os.Stderr, "pki: %v\n", err)
		return 1
	}
	return 0
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// nodeIdentity names the one Node of the cluster, for its certificates.
type nodeIdentity struct{ name, ip string }

func writePKI(dir, server, serviceCIDR string, extraIPs []string, node nodeIdentity) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	prefix, err := netip.ParsePrefix(serviceCIDR)
	if err != nil {
		return fmt.Errorf("--service-cidr: %v", err)
	}
	serviceIP := net.IP(prefix.Masked().Addr().Next().AsSlice())

	ca, err := loadOrCreateCA(dir, "ca", "kubecluster-ca")
	if err != nil {
		return err
	}
	frontProxyCA, err := loadOrCreateCA(dir, "front-proxy-ca", "kubecluster-front-proxy-ca")
	if err != nil {
		return err
	}

	ips := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), serviceIP}
	for _, s := range extraIPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("--ip %q: not an IP address", s)
		}
		ips = append(ips, ip)
	}
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		IPAddresses: ips,
	}
	if err := ensureLeaf(dir, "apiserver", serving, ca); err != nil {
		return err
	}

	clients := []struct{ file, cn, org string }{
		{"admin", "kubernetes-admin", "system:masters"},
		{"controller-manager", "system:kube-controller-manager", ""},
		{"scheduler", "system:kube-scheduler", ""},
		// kube-proxy's identity: bootstrap RBAC binds system:node-proxier to it.
		{"kube-proxy", "system:kube-proxy", ""},
		// CoreDNS' identity: scripts/cluster binds the ClusterRole system:coredns to it.
		{"coredns", "system:coredns", ""},
		// The API server's client certificate towards the kubelet (node agent).
		{"apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"},
	}
	if node.name != "" {
		// The node agent's client identity: the Node authorizer and the
		// NodeRestriction admission plugin recognise system:node:NAME in
		// group system:nodes and limit it to its own Node and pods.
		clients = append(clients, struct{ file, cn, org string }{"node", "system:node:" + node.name, "system:nodes"})
	}
	for _, c := range clients {
		if err := ensureLeaf(dir, c.file, clientTemplate(c.cn, c.org), ca); err != nil {
			return err
		}
	}
	if node.name != "" {
		// The kubelet serving certificate the node agent presents on :10250;
		// the API server checks it against ca.crt (--kubelet-certificate-authority).
		kubelet := &x509.Certificate{
			Subject:     pkix.Name{CommonName: "system:node:" + node.name, Organization: []string{"system:nodes"}},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames:    []string{node.name},
		}
		if node.ip != "" {
			ip := net.ParseIP(node.ip)
			if ip == nil {
				return fmt.Errorf("--node-ip %q: not an IP address", node.ip)
			}
			kubelet.IPAddresses = []net.IP{ip}
		}
		if err := ensureLeaf(dir, "kubelet", kubelet, ca); err != nil {
			return err
		}
	}
	if err := ensureLeaf(dir, "front-proxy-client", clientTemplate("front-proxy-client", ""), frontProxyCA); err != nil {
		return err
	}
	if err := ensureServiceAccountKey(dir); err != nil {
		return err
	}

	for _, c := range clients {
		if c.file == "apiserver-kubelet-client" {
			continue
		}
		if err := writeKubeconfig(dir, c.file, c.cn, server); err != nil {
			return err
		}
	}
	return nil
}

func clientTemplate(cn, org string) *x509.Certificate {
	t := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if org != "" {
		t.Subject.Organization = []string{org}
	}
	return t
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func loadOrCreateCA(dir, file, cn string) (*keyPair, error) {
	certPath, keyPath := filepath.Join(dir, file+".crt"), filepath.Join(dir, file+".key")
	if exists(certPath) && exists(keyPath) {
		return loadKeyPair(certPath, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	if err := writeCertAndKey(certPath, keyPath, der, key); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &keyPair{cert: cert, key: key}, nil
}

func ensureLeaf(dir, file string, tmpl *x509.Certificate, ca *keyPair) error {
	certPath, keyPath := filepath.Join(dir, file+".crt"), filepath.Join(dir, file+".key")
	if exists(certPath) && exists(keyPath) {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-time.Hour)
	tmpl.NotAfter = now.Add(365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return err
	}
	return writeCertAndKey(certPath, keyPath, der, key)
}

// ensureServiceAccountKey writes sa.key (the token signing key) and sa.pub.
func ensureServiceAccountKey(dir string) error {
	keyPath, pubPath := filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if exists(keyPath) && exists(pubPath) {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := writePEM(keyPath, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key), 0o600); err != nil {
		return err
	}
	return writePEM(pubPath, "PUBLIC KEY", pub, 0o644)
}

func writeKubeconfig(dir, file, user, server string) error {
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return err
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, file+".crt"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, file+".key"))
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubecluster"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["kubecluster"] = &clientcmdapi.Context{Cluster: "kubecluster", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "kubecluster"
	return clientcmd.WriteToFile(*cfg, filepath.Join(dir, file+".kubeconfig"))
}

func loadKeyPair(certPath, keyPath string) (*keyPair, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%s or %s: no PEM block", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", keyPath, err)
	}
	return &keyPair{cert: cert, key: key}, nil
}

func writeCertAndKey(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", keyDER, 0o600); err != nil {
		return err
	}
	return writePEM(certPath, "CERTIFICATE", der, 0o644)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(errors.New("crypto/rand failed"))
	}
	return n
}
