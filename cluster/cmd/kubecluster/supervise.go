package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// runSupervise runs `kubecluster COMMAND ARGS...` (this same binary) and
// starts it again whenever it exits, as a kubelet or systemd restarts
// kube-proxy: kube-proxy exits by design when its Node's addresses change or
// the Node is deleted, and expects to be started again. The delay grows from
// --backoff to 10 s while the command keeps failing fast, and goes back to
// --backoff after a run of more than 30 s. SIGTERM or SIGINT is passed to the
// command; once it has exited, the supervisor exits too.
func runSupervise(args []string) int {
	fs := flag.NewFlagSet("supervise", flag.ContinueOnError)
	backoff := fs.Duration("backoff", time.Second, "first delay before a restart")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: kubecluster supervise [--backoff D] -- COMMAND ARGS...")
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "supervise: %v\n", err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	delay := *backoff
	for {
		cmd := exec.Command(self, fs.Args()...)
		cmd.Args[0] = os.Args[0] // the same argv[0] as this process, so scripts/cluster recognises it
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
		started := time.Now()
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "supervise: %v\n", err)
			return 1
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case s := <-sig:
			_ = cmd.Process.Signal(s)
			<-done
			return 0
		case err := <-done:
			var exit *exec.ExitError
			status := "exit status 0"
			if errors.As(err, &exit) {
				status = exit.String()
			} else if err != nil {
				status = err.Error()
			}
			if time.Since(started) > 30*time.Second {
				delay = *backoff
			}
			fmt.Fprintf(os.Stderr, "supervise: %s ended (%s) after %v; starting it again in %v\n",
				fs.Arg(0), status, time.Since(started).Round(time.Millisecond), delay)
			select {
			case <-sig:
				return 0
			case <-time.After(delay):
			}
			delay = min(2*delay, 10*time.Second)
		}
	}
}
