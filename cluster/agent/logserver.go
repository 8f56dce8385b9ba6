package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-client/pkg/logs"
	"k8s.io/klog/v2"
)

// serve starts the kubelet's HTTPS server on the node's InternalIP (the
// API server reaches it there for `kubectl logs`); it serves
// /containerLogs/NS/POD/CONTAINER and /healthz.
func (a *Agent) serve() (*http.Server, error) {
	if a.cfg.Port < 0 {
		return &http.Server{}, nil
	}
	cert, err := a.servingCert()
	if err != nil {
		return nil, err
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if a.cfg.ClientCA != "" {
		pem, err := os.ReadFile(a.cfg.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--client-ca-file %s: no certificate in it", a.cfg.ClientCA)
		}
		tlsConfig.ClientCAs = pool
		tlsConfig.ClientAuth = tls.RequireAndVerifyClientCert
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/", a.containerLogs)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	ln, err := net.Listen("tcp", net.JoinHostPort(a.hostIP, strconv.Itoa(a.cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("the kubelet port: %w", err)
	}
	a.ServerAddr = ln.Addr().String()
	srv := &http.Server{Handler: mux, TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "kubelet server")
		}
	}()
	return srv, nil
}

// servingCert is --tls-cert-file, or a self-signed certificate for the
// node's address (the API server checks it only with
// --kubelet-certificate-authority).
func (a *Agent) servingCert() (tls.Certificate, error) {
	if a.cfg.TLSCert != "" {
		return tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: a.cfg.NodeName + "@" + strconv.FormatInt(time.Now().Unix(), 10)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(a.hostIP)},
		DNSNames:     []string{a.cfg.NodeName},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// containerLogs is the kubelet's getContainerLogs: the query is a v1
// PodLogOptions; errors are plain text, 404 for an unknown pod or
// container, 400 for a container without logs (validateContainerLogStatus).
func (a *Agent) containerLogs(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		http.Error(w, `{"message": "Missing podNamespace, podID or container name."}`, http.StatusBadRequest)
		return
	}
	ns, name, container := parts[0], parts[1], parts[2]
	opts, err := logOptions(r.URL.Query())
	if err != nil {
		http.Error(w, `{"message": "Unable to decode query."}`, http.StatusBadRequest)
		return
	}
	worker := a.workerByName(ns, name)
	if worker == nil {
		http.Error(w, fmt.Sprintf("pod %q does not exist", name), http.StatusNotFound)
		return
	}
	inst, err := worker.logInstance(name, container, r.URL.Query().Get("previous") == "true")
	if err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, errNoSuchContainer) {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Transfer-Encoding", "chunked")
	fw := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.f = f
	}
	if err := logs.ReadLogs(r.Context(), inst.logPath, inst.id, opts, runtimeStatus{a: a}, fw, fw); err != nil && r.Context().Err() == nil {
		klog.ErrorS(err, "reading container logs", "pod", ns+"/"+name, "container", container)
	}
}

var errNoSuchContainer = errors.New("no such container")

// logInstance picks the instance whose log is asked for, with the
// kubelet's rules and messages (validateContainerLogStatus).
func (w *podWorker) logInstance(podName, container string, previous bool) (*instance, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var run *containerRun
	for _, r := range append(append([]*containerRun{}, w.containers...), w.init...) {
		if r.spec.Name == container {
			run = r
		}
	}
	if run == nil {
		return nil, fmt.Errorf("container %q not found in pod %q: %w", container, podName, errNoSuchContainer)
	}
	s := w.viewOf(run).status(reasonContainerCreating)
	last := s.LastTerminationState.Terminated
	var id string
	switch {
	case previous:
		if last == nil || last.ContainerID == "" {
			return nil, fmt.Errorf("previous terminated container %q in pod %q not found", container, podName)
		}
		id = last.ContainerID
	case s.State.Running != nil:
		id = s.ContainerID
	case s.State.Terminated != nil:
		id = s.State.Terminated.ContainerID
	case last != nil:
		id = last.ContainerID
	case s.State.Waiting != nil:
		switch s.State.Waiting.Reason {
		case reasonErrImagePull:
			return nil, fmt.Errorf("container %q in pod %q is waiting to start: image can't be pulled", container, podName)
		case reasonImagePullBackOff:
			return nil, fmt.Errorf("container %q in pod %q is waiting to start: trying and failing to pull image", container, podName)
		default:
			return nil, fmt.Errorf("container %q in pod %q is waiting to start: %v", container, podName, s.State.Waiting.Reason)
		}
	}
	for _, i := range []*instance{run.cur, run.prev} {
		if i != nil && containerIDPrefix+i.id == id {
			return i, nil
		}
	}
	return nil, fmt.Errorf("container %q in pod %q is terminated", container, podName)
}

func (a *Agent) workerByName(ns, name string) *podWorker {
	a.mu.Lock()
	defer a.mu.Unlock()
	var found *podWorker
	for _, w := range a.workers {
		w.mu.Lock()
		match := w.pod.Namespace == ns && w.pod.Name == name && !w.gone
		newer := found == nil || w.pod.CreationTimestamp.After(found.pod.CreationTimestamp.Time)
		w.mu.Unlock()
		if match && newer {
			found = w
		}
	}
	return found
}

// logOptions reads the query as the kubelet does (a v1.PodLogOptions;
// `tail` is the old name of tailLines, "all" meaning no limit).
func logOptions(q url.Values) (*logs.LogOptions, error) {
	opts := &logs.LogOptions{}
	var err error
	flag := func(k string) bool {
		if err != nil || q.Get(k) == "" {
			return false
		}
		var b bool
		b, err = strconv.ParseBool(q.Get(k))
		return b
	}
	number := func(v string) *int64 {
		if err != nil || v == "" {
			return nil
		}
		var n int64
		n, err = strconv.ParseInt(v, 10, 64)
		return &n
	}
	opts.Follow = flag("follow")
	opts.Timestamp = flag("timestamps")
	_ = flag("previous")
	tail := q.Get("tailLines")
	if t := q.Get("tail"); t != "" {
		tail = t
		if t == "all" {
			tail = ""
		}
	}
	opts.TailLines = number(tail)
	opts.LimitBytes = number(q.Get("limitBytes"))
	if s := number(q.Get("sinceSeconds")); s != nil {
		opts.Since = time.Now().Add(-time.Duration(*s) * time.Second)
	}
	if t := q.Get("sinceTime"); t != "" && err == nil {
		opts.Since, err = time.Parse(time.RFC3339, t)
	}
	return opts, err
}

// runtimeStatus answers the log reader's one question: is the container
// still writing its log? (Until all its output is in, yes.)
type runtimeStatus struct {
	internalapi.RuntimeService // only ContainerStatus is called
	a                          *Agent
}

func (r runtimeStatus) ContainerStatus(_ context.Context, id string, _ bool) (*runtimeapi.ContainerStatusResponse, error) {
	state := runtimeapi.ContainerState_CONTAINER_EXITED
	r.a.mu.Lock()
	i, ok := r.a.instances[id]
	r.a.mu.Unlock()
	if ok {
		select {
		case <-i.drained:
		default:
			state = runtimeapi.ContainerState_CONTAINER_RUNNING
		}
	}
	return &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{Id: id, State: state}}, nil
}

type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if f.f != nil {
		f.f.Flush()
	}
	return n, err
}
