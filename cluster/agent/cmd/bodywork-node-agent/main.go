// Command bodywork-node-agent runs bodywork's node agent: a test fixture
// that registers a Node with the API server and runs the pods bound to it
// as local processes, as a kubelet would (see ../../README.md).
package main

import (
	"os"

	agent "bodywork.dev/cluster/agent"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	agent.RunHelperIfRequested()
	os.Exit(agent.Main(os.Args[1:], kubeClient))
}

func kubeClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "bodywork-node-agent"
	return kubernetes.NewForConfig(cfg)
}
