package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type probeKind string

const (
	probeReadiness probeKind = "Readiness"
	probeLiveness  probeKind = "Liveness"
	probeStartup   probeKind = "Startup"
)

// prober runs one probe of one container instance as the kubelet's probe
// worker does (pkg/kubelet/prober/worker.go): a probe every period from
// the instance's start, none before initialDelaySeconds, readiness and
// liveness only once started; a result counts once it repeats
// successThreshold (or failureThreshold) times. A liveness failure or a
// startup failure kills the instance (onFail); a startup success ends
// the startup probe.
type prober struct {
	kind     probeKind
	probe    *v1.Probe
	inst     *instance
	c        *v1.Container
	podIP    string
	onFail   func(message string)
	onChange func()
}

func withDefaults(p *v1.Probe) *v1.Probe {
	p = p.DeepCopy()
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	return p
}

func (p *prober) run(ctx context.Context) {
	spec := withDefaults(p.probe)
	ticker := time.NewTicker(time.Duration(spec.PeriodSeconds) * time.Second)
	defer ticker.Stop()
	var last bool
	run := 0
	for {
		if !p.once(ctx, spec, &last, &run) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-p.inst.done:
			return
		case <-ticker.C:
		}
	}
}

// once is one tick; false ends the probe.
func (p *prober) once(ctx context.Context, spec *v1.Probe, last *bool, run *int) bool {
	if time.Since(p.inst.startedAt) < time.Duration(spec.InitialDelaySeconds)*time.Second {
		return true
	}
	started := p.inst.started.Load()
	if (p.kind == probeStartup) == started {
		return true
	}
	ok, _ := p.check(ctx, spec)
	if ctx.Err() != nil || p.inst.exited() {
		return false
	}
	if ok == *last && *run > 0 {
		*run++
	} else {
		*last, *run = ok, 1
	}
	if (!ok && *run < int(spec.FailureThreshold)) || (ok && *run < int(spec.SuccessThreshold)) {
		return true
	}
	switch p.kind {
	case probeReadiness:
		if p.inst.ready.Swap(ok) != ok {
			p.onChange()
		}
		return true
	case probeStartup:
		if ok {
			p.inst.started.Store(true)
			p.onChange()
		} else {
			p.onFail(fmt.Sprintf("Container %s failed startup probe, will be restarted", p.c.Name))
		}
		return false
	default:
		if !ok {
			p.onFail(fmt.Sprintf("Container %s failed liveness probe, will be restarted", p.c.Name))
			return false
		}
		return true
	}
}

// check runs the probe's handler once: httpGet (2xx and 3xx succeed),
// tcpSocket (a connection), exec (exit 0, in the container's namespaces).
func (p *prober) check(ctx context.Context, spec *v1.Probe) (bool, string) {
	timeout := time.Duration(spec.TimeoutSeconds) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case spec.HTTPGet != nil:
		return p.httpGet(ctx, spec.HTTPGet, timeout)
	case spec.TCPSocket != nil:
		port, err := resolvePort(spec.TCPSocket.Port, p.c)
		if err != nil {
			return false, err.Error()
		}
		host := spec.TCPSocket.Host
		if host == "" {
			host = p.podIP
		}
		conn, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		_ = conn.Close()
		return true, ""
	case spec.Exec != nil:
		// As the container's user, with its privileges: an exec in a
		// container runs as its process does.
		args := []string{"--target", strconv.Itoa(p.inst.pid), "--mount", "--uts", "--net", "--wd=" + p.inst.dir, "--"}
		args = append(append(args, p.inst.user.setprivArgs()...), spec.Exec.Command...)
		cmd := exec.CommandContext(ctx, "nsenter", args...)
		cmd.Env = p.inst.env
		out, err := cmd.CombinedOutput()
		return err == nil, string(out)
	default:
		// gRPC probes are not implemented: never the cause of a restart.
		return true, ""
	}
}

func (p *prober) httpGet(ctx context.Context, g *v1.HTTPGetAction, timeout time.Duration) (bool, string) {
	port, err := resolvePort(g.Port, p.c)
	if err != nil {
		return false, err.Error()
	}
	host := g.Host
	if host == "" {
		host = p.podIP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	full := u.String() + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, full, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
		} else {
			req.Header.Add(h.Name, h.Value)
		}
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives: true,
			Proxy:             nil,
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 10*1024))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, string(body)
	}
	return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

// resolvePort: a number, or the name of one of the container's ports.
func resolvePort(port intstr.IntOrString, c *v1.Container) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("couldn't find port: %v in %v", port.StrVal, c.Name)
}
