package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// runFreePorts prints one free TCP port on 127.0.0.1 per argument, on one
// line: an argument of 0 asks for any free port, any other number is checked
// and printed as it is. An argument HOST:PORT checks or picks the port on
// HOST instead. All the ports are held at once while choosing, so the ones
// printed are distinct.
func runFreePorts(args []string) int {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	var out []string
	for _, a := range args {
		host, port := "127.0.0.1", a
		if h, p, err := net.SplitHostPort(a); err == nil {
			host, port = h, p
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			fmt.Fprintf(os.Stderr, "freeports: %q is not a port number\n", a)
			return 2
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			fmt.Fprintf(os.Stderr, "port %d on %s is taken\n", p, host)
			return 1
		}
		listeners = append(listeners, l)
		out = append(out, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	fmt.Println(strings.Join(out, " "))
	return 0
}

type pidList []string

func (p *pidList) String() string     { return strings.Join(*p, ",") }
func (p *pidList) Set(v string) error { *p = append(*p, v); return nil }

// runProbe waits until every URL answers 200, in order, polling every 100 ms.
// It fails early when one of the watched processes (--watch NAME=PID) has
// exited, and after --timeout.
func runProbe(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 120*time.Second, "give up after this long")
	kubeconfig := fs.String("kubeconfig", "", "use this kubeconfig's TLS client settings (for the API server)")
	insecure := fs.Bool("insecure", false, "do not verify the server's certificate (self-signed loopback endpoints)")
	var watch pidList
	fs.Var(&watch, "watch", "NAME=PID of a process that must stay alive while waiting (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}

	transport := http.DefaultTransport.(*http.Transport).Clone()
	if *kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
		if err != nil {
			fmt.Fprintf(os.Stderr, "probe: %v\n", err)
			return 2
		}
		tlsCfg, err := rest.TLSConfigFor(cfg)
		if err != nil {
			fmt.Fprintf(os.Stderr, "probe: %v\n", err)
			return 2
		}
		transport.TLSClientConfig = tlsCfg
	} else if *insecure {
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback, self-signed
	}
	client := &http.Client{Transport: transport, Timeout: 5 * time.Second}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	for _, u := range fs.Args() {
		var last string
		for {
			if name, pid, dead := deadProcess(watch); dead {
				fmt.Fprintf(os.Stderr, "%s (pid %s) exited while waiting for %s\n", name, pid, u)
				return 1
			}
			resp, err := client.Get(u)
			if err == nil {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
			} else {
				last = err.Error()
			}
			select {
			case <-ctx.Done():
				fmt.Fprintf(os.Stderr, "%s not ready after %v: %s\n", u, *timeout, lastLine(last))
				return 1
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return 0
}

// deadProcess reports the first watched process that no longer runs (gone, or
// a zombie waiting for its parent).
func deadProcess(watch []string) (name, pid string, dead bool) {
	for _, w := range watch {
		name, pid, _ := strings.Cut(w, "=")
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return name, pid, true
		}
		// The state follows the parenthesised command name: "PID (comm) S ...".
		s := string(stat)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X') {
			return name, pid, true
		}
	}
	return "", "", false
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
