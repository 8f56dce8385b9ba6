//go:build e2e

package e2e

// The proof that every actor has the rights it needs: after the package's
// tests, the API server's audit log (scripts/cluster writes one, at
// Metadata level, in DIR/logs/audit.log) must hold no refused request. The
// audit log covers the whole life of the cluster, so when scripts/test runs
// this package after `cargo test`, it covers every test on the cluster:
// the CLI as admin and as the README's bodywork-user, the workflow
// controller's Jobs, detached runs, cron runs and stage pods, and this
// package's own clients. The node's and the control plane's own requests
// are left out of the log by the policy (scripts/cluster).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// refusedOnPurpose names the users a test is refused as, deliberately, and
// why. A refusal of anyone else fails the run.
var refusedOnPurpose = map[string]string{
	// crates/bodywork-cli/tests/it/cluster/client.rs,
	// an_exec_credential_plugin_supplies_who_the_cli_is: the plugin's
	// account has no rights at first, so that the refusal shows it is the
	// one the CLI speaks as.
	"plugged-in": "the exec-plugin test's account, refused once to show who the CLI is",
}

// refusedPodsOnPurpose names the pods a test makes with `kubectl run` to be
// refused by an admission plugin, and why.
var refusedPodsOnPurpose = map[string]string{
	// crates/bodywork-cli/tests/it/cluster.rs,
	// a_restricted_namespace_runs_a_batch_and_a_service_stage_as_the_images_user:
	// a pod with no securityContext, refused to show that the namespace
	// enforces the restricted Pod Security Standard.
	"plain": "the PodSecurity test's control pod",
}

// excuse says why a refused request is no fault of any actor, or "" when
// it is one.
func excuse(ev *auditEvent) string {
	user := ev.User.Username
	// Service accounts are system:serviceaccount:NAMESPACE:NAME; the
	// namespaces are the tests' own, made fresh each run.
	if why := refusedOnPurpose[user[strings.LastIndex(user, ":")+1:]]; why != "" && strings.HasPrefix(user, "system:serviceaccount:") {
		return why
	}
	if r := ev.ObjectRef; r != nil && r.Resource == "pods" && strings.Contains(ev.RequestURI, "fieldManager=kubectl-run") {
		if why := refusedPodsOnPurpose[r.Name]; why != "" {
			return why
		}
	}
	// The NamespaceLifecycle admission plugin refusing a controller of the
	// control plane (the ReplicaSet controller, the root CA publisher) that
	// creates in a namespace a test is deleting: a race Kubernetes settles
	// itself, not a missing permission.
	if strings.HasPrefix(user, "system:serviceaccount:kube-system:") && ev.decision() == "allow" &&
		strings.HasSuffix(ev.ResponseStatus.Message, "because it is being terminated") {
		return "a namespace being deleted"
	}
	return ""
}

// auditEvent is the part of an audit.k8s.io/v1 Event the check reads.
type auditEvent struct {
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"responseStatus"`
	Annotations map[string]string `json:"annotations"`
}

// decision is the authorizer's: "allow" for a request an admission plugin
// refused, "forbid" for one RBAC (or Node authorization) refused.
func (ev *auditEvent) decision() string {
	return ev.Annotations["authorization.k8s.io/decision"]
}

func TestMain(m *testing.M) {
	code := m.Run()
	if problem := checkAuditLog(); problem != "" {
		fmt.Fprintln(os.Stderr, problem)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// checkAuditLog returns "" when the audit log shows no refused request, and
// otherwise a report of every refusal, grouped by who was refused what.
func checkAuditLog() string {
	kubeconfig, err := kubeconfigPath()
	if err != nil {
		return fmt.Sprintf("FAIL: the audit log: %v", err)
	}
	path := filepath.Join(filepath.Dir(kubeconfig), "logs", "audit.log")
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("FAIL: the audit log: %v (scripts/cluster up writes it; is this an older cluster?)", err)
	}
	defer f.Close()
	refused := map[string]int{}
	excused := map[string]int{}
	events := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Sprintf("FAIL: %s line %d: %v", path, events+1, err)
		}
		events++
		if ev.ResponseStatus == nil || ev.ResponseStatus.Code != 403 {
			continue
		}
		if why := excuse(&ev); why != "" {
			excused[why]++
			continue
		}
		refused[describeRefusal(&ev)]++
	}
	if err := sc.Err(); err != nil {
		return fmt.Sprintf("FAIL: reading %s: %v", path, err)
	}
	if events == 0 {
		return fmt.Sprintf("FAIL: %s is empty: the API server audited nothing", path)
	}
	if len(refused) == 0 {
		fmt.Fprintf(os.Stderr, "audit: %d requests in %s, none refused (excused: %v)\n", events, path, excused)
		return ""
	}
	lines := make([]string, 0, len(refused))
	for what, n := range refused {
		lines = append(lines, fmt.Sprintf("  %dx %s", n, what))
	}
	sort.Strings(lines)
	return fmt.Sprintf("FAIL: the API server refused %d kinds of request (of %d in %s); every actor must have the rights it uses:\n%s",
		len(refused), events, path, strings.Join(lines, "\n"))
}

// describeRefusal words a refused request: who, the verb, what, and the
// authorizer's reason.
func describeRefusal(ev *auditEvent) string {
	what := ev.RequestURI
	if r := ev.ObjectRef; r != nil {
		what = r.Resource
		if r.Subresource != "" {
			what += "/" + r.Subresource
		}
		if r.Name != "" {
			what += " " + r.Name
		}
		if r.Namespace != "" {
			what += " in " + r.Namespace
		} else {
			what += " (cluster-wide)"
		}
	}
	reason := ev.ResponseStatus.Message
	if ev.decision() == "forbid" {
		reason = "RBAC: " + reason
	}
	return fmt.Sprintf("%s: %s %s: %s", ev.User.Username, ev.Verb, what, reason)
}
