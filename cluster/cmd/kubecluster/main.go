// Command kubecluster is one binary holding a single-node Kubernetes control
// plane built from Kubernetes' own Go modules: embedded etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kube-proxy, CoreDNS and kubectl,
// plus the small helpers scripts/cluster needs (certificates, free ports,
// readiness probes, DNS queries, a restarting supervisor).
//
// Each component runs as its own process from this one binary: either
// `kubecluster COMPONENT ARGS...`, or through a symlink named after the
// component (`kubectl`, `kube-apiserver`, ...), which dispatches on argv[0].
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	_ "time/tzdata" // CronJob time zones, as the upstream binaries do

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's client auth plugins
)

// commands maps a subcommand (or argv[0] basename) to its entry point. Each
// entry point takes the arguments after the command name and returns the
// process exit code.
var commands = map[string]func(args []string) int{
	"etcd": runEtcd,
	"kube-apiserver": func(args []string) int {
		return runCobra("kube-apiserver", args, func() int { return cli.Run(apiserver.NewAPIServerCommand()) })
	},
	"kube-controller-manager": func(args []string) int {
		return runCobra("kube-controller-manager", args, func() int { return cli.Run(controllermanager.NewControllerManagerCommand()) })
	},
	"kube-scheduler": func(args []string) int {
		return runCobra("kube-scheduler", args, func() int { return cli.Run(scheduler.NewSchedulerCommand()) })
	},
	"kube-proxy": func(args []string) int {
		return runCobra("kube-proxy", args, func() int { return cli.Run(proxy.NewProxyCommand()) })
	},
	"coredns":   runCoreDNS,
	"kubectl":   runKubectl,
	"pki":       runPKI,
	"freeports": runFreePorts,
	"probe":     runProbe,
	"dnsquery":  runDNSQuery,
	"supervise": runSupervise,
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if _, ok := commands[name]; !ok {
		if len(args) == 0 {
			usage()
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	run, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "kubecluster: unknown command %q\n", name)
		usage()
		os.Exit(2)
	}
	os.Exit(run(args))
}

func usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: kubecluster COMMAND [ARGS...]\ncommands: %s\n", strings.Join(names, ", "))
}

// runCobra runs an upstream cobra command as if it were its own binary: cobra
// reads os.Args[1:], so os.Args is rewritten to [name, args...] first.
func runCobra(name string, args []string, run func() int) int {
	os.Args = append([]string{name}, args...)
	return run()
}

// runKubectl is k8s.io/kubernetes/cmd/kubectl's main.
func runKubectl(args []string) int {
	os.Args = append([]string{"kubectl"}, args...)
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) //nolint:errcheck
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		kubectlutil.CheckErr(err) // prints the error and exits non-zero
	}
	return 0
}
