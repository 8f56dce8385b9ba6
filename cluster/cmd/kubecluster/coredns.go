package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"

	// The plugins this cluster's Corefile uses, and no others (CoreDNS' own
	// build links all of them through core/plugin; the cloud backends would
	// bring in their SDKs). Each registers itself with caddy in its init.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// runCoreDNS runs CoreDNS (github.com/coredns/coredns) with the Corefile given
// by -conf, as CoreDNS' own main does (coremain.Run) but without the flags
// coremain registers on the process-wide flag set, which the other commands of
// this binary share. It serves until SIGTERM or SIGINT.
func runCoreDNS(args []string) int {
	fs := flag.NewFlagSet("coredns", flag.ContinueOnError)
	conf := fs.String("conf", "", "Corefile to load (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *conf == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: kubecluster coredns -conf COREFILE")
		return 2
	}
	contents, err := os.ReadFile(*conf)
	if err != nil {
		fmt.Fprintf(os.Stderr, "coredns: %v\n", err)
		return 1
	}
	if err := dnsserver.Register(); err != nil {
		fmt.Fprintf(os.Stderr, "coredns: %v\n", err)
		return 1
	}
	caddy.Quiet = true
	instance, err := caddy.Start(caddy.CaddyfileInput{Contents: contents, Filepath: *conf, ServerTypeName: "dns"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "coredns: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "coredns: serving (%s)\n", *conf)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	fmt.Fprintf(os.Stderr, "coredns: %v, stopping\n", s)
	if err := instance.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "coredns: %v\n", err)
		return 1
	}
	return 0
}
