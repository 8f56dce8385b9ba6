package agent

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestExpandFollowsTheKubeletsRules(t *testing.T) {
	vars := map[string]string{"VAR_A": "A", "VAR_B": "B", "VAR_EMPTY": "", "VAR_REF": "$(VAR_A)"}
	for in, want := range map[string]string{
		"$(VAR_A)":                  "A",
		"___$(VAR_A)___":            "___A___",
		"$(VAR_A)-$(VAR_B)":         "A-B",
		"$(VAR_A)$(VAR_B)":          "AB",
		"$$(VAR_A)":                 "$(VAR_A)", // escaped
		"$$$(VAR_A)":                "$A",
		"foo$$$$bar":                "foo$$bar",
		"$(VAR_UNKNOWN)":            "$(VAR_UNKNOWN)",
		"$(VAR_EMPTY)x":             "x",
		"$(VAR_REF)":                "$(VAR_A)", // one level only
		"$(VAR_A":                   "$(VAR_A",
		"$(VAR_A$(VAR_B)":           "$(VAR_A$(VAR_B)", // the name runs to the first ')'
		"$VAR_A":                    "$VAR_A",
		"$":                         "$",
		"$$":                        "$",
		"$()":                       "$()",
		"no refs at all":            "no refs at all",
		"--x=$(VAR_A) --y=$(VAR_B)": "--x=A --y=B",
	} {
		if got := expand(in, lookupIn(vars)); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestContainerEnvOrderSourcesAndErrors(t *testing.T) {
	ns := "team"
	client := fake.NewClientset(
		&v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: ns},
			Data: map[string][]byte{"user": []byte("ann"), "pass": []byte("s3cret")}},
		&v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings", Namespace: ns},
			Data: map[string]string{"MODE": "fast", "LEVEL": "3"}},
	)
	yes := true
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns, UID: "u1",
		Labels: map[string]string{"app": "x"}}, Spec: v1.PodSpec{NodeName: "n", ServiceAccountName: "sa"}}
	c := &v1.Container{
		Name: "c",
		EnvFrom: []v1.EnvFromSource{
			{ConfigMapRef: &v1.ConfigMapEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "settings"}}},
			{Prefix: "DB_", SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "creds"}}},
			{SecretRef: &v1.SecretEnvSource{LocalObjectReference: v1.LocalObjectReference{Name: "absent"}, Optional: &yes}},
		},
		Env: []v1.EnvVar{
			{Name: "MODE", Value: "slow"}, // env wins over envFrom
			{Name: "GREETING", Value: "hi $(DB_user) in $(MODE) on $(KUBERNETES_SERVICE_HOST), $(LATER) $$(MODE)"},
			{Name: "LATER", Value: "later"},
			{Name: "PASS", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{
				LocalObjectReference: v1.LocalObjectReference{Name: "creds"}, Key: "pass"}}},
			{Name: "LVL", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{
				LocalObjectReference: v1.LocalObjectReference{Name: "settings"}, Key: "LEVEL"}}},
			{Name: "SSH_KEY", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{
				LocalObjectReference: v1.LocalObjectReference{Name: "ssh-github-private-key"}, Key: "k", Optional: &yes}}},
			{Name: "POD", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "IP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "HOST", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "status.hostIP"}}},
			{Name: "APP", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "SA", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
			{Name: "EMPTY"},
		},
	}
	services := []*v1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
			Spec: v1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []v1.ServicePort{{Name: "https", Port: 443, Protocol: "TCP"}}}},
	}
	env, err := containerEnv(context.Background(), apiEnvSource{client}, pod, c,
		podAddresses{PodIP: "10.244.0.7", HostIP: "10.244.0.1"}, serviceEnv(services, ns, true), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"MODE": "slow", "LEVEL": "3", "DB_user": "ann", "DB_pass": "s3cret",
		"GREETING": "hi ann in slow on 10.96.0.1, $(LATER) $(MODE)",
		"PASS":     "s3cret", "LVL": "3", "POD": "p", "NS": "team", "IP": "10.244.0.7",
		"HOST": "10.244.0.1", "APP": "x", "SA": "sa", "EMPTY": "",
		"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
		"KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1",
	} {
		if got, ok := env[k]; !ok || got != want {
			t.Errorf("%s = %q (set: %v), want %q", k, got, ok, want)
		}
	}
	if _, ok := env["SSH_KEY"]; ok {
		t.Errorf("an optional secret that does not exist sets nothing")
	}
	cmd, args := expandCommand(&v1.Container{Command: []string{"bodywork"}, Args: []string{"stage", "$(POD)", "$(NOPE)"}}, env)
	if strings.Join(cmd, " ") != "bodywork" || strings.Join(args, " ") != "stage p $(NOPE)" {
		t.Errorf("command %v %v", cmd, args)
	}

	for _, tc := range []struct {
		env  v1.EnvVar
		want string
	}{
		{v1.EnvVar{Name: "X", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{
			LocalObjectReference: v1.LocalObjectReference{Name: "creds"}, Key: "nope"}}},
			"couldn't find key nope in Secret team/creds"},
		{v1.EnvVar{Name: "X", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{
			LocalObjectReference: v1.LocalObjectReference{Name: "gone"}, Key: "k"}}},
			`secrets "gone" not found`},
		{v1.EnvVar{Name: "X", ValueFrom: &v1.EnvVarSource{ConfigMapKeyRef: &v1.ConfigMapKeySelector{
			LocalObjectReference: v1.LocalObjectReference{Name: "settings"}, Key: "nope"}}},
			"couldn't find key nope in ConfigMap team/settings"},
	} {
		_, err := containerEnv(context.Background(), apiEnvSource{client}, pod, &v1.Container{Env: []v1.EnvVar{tc.env}}, podAddresses{}, nil, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}

func TestServiceEnvIsTheKubeletsLinks(t *testing.T) {
	svc := func(ns, name, ip string, ports ...v1.ServicePort) *v1.Service {
		return &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1.ServiceSpec{ClusterIP: ip, Ports: ports}}
	}
	services := []*v1.Service{
		svc("default", "kubernetes", "10.96.0.1", v1.ServicePort{Name: "https", Port: 443}),
		svc("default", "other", "10.96.0.5", v1.ServicePort{Port: 80}),
		svc("ns", "scoring-service", "10.96.0.9", v1.ServicePort{Port: 5000, Protocol: "TCP"}),
		svc("ns", "headless", "None", v1.ServicePort{Port: 1}),
	}
	env := serviceEnv(services, "ns", true)
	for k, want := range map[string]string{
		"SCORING_SERVICE_SERVICE_HOST":        "10.96.0.9",
		"SCORING_SERVICE_SERVICE_PORT":        "5000",
		"SCORING_SERVICE_PORT":                "tcp://10.96.0.9:5000",
		"SCORING_SERVICE_PORT_5000_TCP":       "tcp://10.96.0.9:5000",
		"SCORING_SERVICE_PORT_5000_TCP_PROTO": "tcp",
		"SCORING_SERVICE_PORT_5000_TCP_PORT":  "5000",
		"SCORING_SERVICE_PORT_5000_TCP_ADDR":  "10.96.0.9",
		"KUBERNETES_SERVICE_HOST":             "10.96.0.1",
	} {
		if env[k] != want {
			t.Errorf("%s = %q, want %q", k, env[k], want)
		}
	}
	for k := range env {
		if strings.HasPrefix(k, "OTHER_") || strings.HasPrefix(k, "HEADLESS_") {
			t.Errorf("unexpected %s", k)
		}
	}
	env = serviceEnv(services, "ns", false)
	if _, ok := env["SCORING_SERVICE_SERVICE_HOST"]; ok || env["KUBERNETES_SERVICE_HOST"] == "" {
		t.Errorf("enableServiceLinks=false keeps only the master service: %v", env)
	}
}

func TestResolvConfAndHostsFile(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "ns"}}
	got, ok := resolvConf(pod, "10.96.0.10", "cluster.local", []string{"example.org"})
	want := "search ns.svc.cluster.local svc.cluster.local cluster.local example.org\nnameserver 10.96.0.10\noptions ndots:5\n"
	if !ok || got != want {
		t.Errorf("resolv.conf %q", got)
	}
	if _, ok := resolvConf(pod, "", "cluster.local", nil); ok {
		t.Errorf("no cluster DNS: the host's resolv.conf")
	}
	hosts, _ := hostsFile(pod, "10.244.0.7", "cluster.local")
	if !strings.HasPrefix(string(hosts), "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n") ||
		!strings.HasSuffix(string(hosts), "10.244.0.7\tweb-1\n") {
		t.Errorf("hosts:\n%s", hosts)
	}
}

func TestArgvIsTheImagesWithCommandAndArgs(t *testing.T) {
	env := map[string]string{"NS": "ns1"}
	for _, tc := range []struct {
		command, args []string
		want          string
	}{
		{[]string{"bodywork"}, []string{"stage", "--namespace", "$(NS)"}, "bodywork stage --namespace ns1"},
		{nil, []string{"python", "-c", "print(1)"}, "python -c print(1)"},
		{[]string{"sh", "-c", "true"}, nil, "sh -c true"},
		{nil, nil, "bodywork --help"},
	} {
		got := strings.Join(containerArgv(&v1.Container{Command: tc.command, Args: tc.args}, env), " ")
		if got != tc.want {
			t.Errorf("command %v args %v: %q, want %q", tc.command, tc.args, got, tc.want)
		}
	}
}

func TestImageEnvIsUnderThePods(t *testing.T) {
	a := &Agent{cfg: &Config{ImageEnv: map[string]string{"UV_OFFLINE": "1", "HOME": "/image-home", "A": "image"}}, path: "/bin"}
	got := a.imageEnv(map[string]string{"A": "pod"}, "/scratch", "h")
	want := map[string]string{"PATH": "/bin", "HOME": "/image-home", "HOSTNAME": "h", "PYTHONUNBUFFERED": "1",
		"BODYWORK_HOME": "/scratch/.bodywork", "UV_OFFLINE": "1", "A": "pod"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}
