package agent

import (
	"context"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// expand replaces $(NAME) in s with mapping's value (the kubelet's
// third_party/forked/golang/expansion): `$$` is a literal `$`, an
// unterminated or unknown reference stays as written.
func expand(s string, mapping func(string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; next {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := mapping(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
			b.WriteByte(next)
			i++
		}
	}
	return b.String()
}

// lookupIn looks a name up in each map in turn.
func lookupIn(maps ...map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for _, m := range maps {
			if v, ok := m[name]; ok {
				return v, true
			}
		}
		return "", false
	}
}

// expandCommand expands $(VAR) in command and args with the container's
// final environment (kuberuntime's ExpandContainerCommandAndArgs).
func expandCommand(c *v1.Container, env map[string]string) (command, args []string) {
	m := lookupIn(env)
	for _, s := range c.Command {
		command = append(command, expand(s, m))
	}
	for _, s := range c.Args {
		args = append(args, expand(s, m))
	}
	return command, args
}

// envSource fetches what env and envFrom name, in the pod's namespace.
type envSource interface {
	secret(ctx context.Context, ns, name string) (*v1.Secret, error)
	configMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error)
}

type apiEnvSource struct{ client kubernetes.Interface }

func (s apiEnvSource) secret(ctx context.Context, ns, name string) (*v1.Secret, error) {
	return s.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s apiEnvSource) configMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
	return s.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

// podAddresses is what fieldRef's status fields read.
type podAddresses struct {
	PodIP  string
	HostIP string
}

// containerEnv is the container's environment as the kubelet's
// makeEnvironmentVariables builds it: envFrom first, then env in order
// (each value expanded over what came before and the service variables),
// then the service variables not already set.
func containerEnv(ctx context.Context, src envSource, pod *v1.Pod, c *v1.Container, addrs podAddresses, serviceEnv map[string]string, nodeCapacity v1.ResourceList) (map[string]string, error) {
	secrets := map[string]*v1.Secret{}
	configMaps := map[string]*v1.ConfigMap{}
	getSecret := func(name string) (*v1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		s, err := src.secret(ctx, pod.Namespace, name)
		if err == nil {
			secrets[name] = s
		}
		return s, err
	}
	getConfigMap := func(name string) (*v1.ConfigMap, error) {
		if m, ok := configMaps[name]; ok {
			return m, nil
		}
		m, err := src.configMap(ctx, pod.Namespace, name)
		if err == nil {
			configMaps[name] = m
		}
		return m, err
	}
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			m, err := getConfigMap(from.ConfigMapRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && isTrue(from.ConfigMapRef.Optional) {
					continue
				}
				return nil, err
			}
			for k, v := range m.Data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			s, err := getSecret(from.SecretRef.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && isTrue(from.SecretRef.Optional) {
					continue
				}
				return nil, err
			}
			for k, v := range s.Data {
				env[from.Prefix+k] = string(v)
			}
		}
	}
	mapping := lookupIn(env, serviceEnv)
	for _, e := range c.Env {
		value := e.Value
		switch {
		case value != "":
			value = expand(value, mapping)
		case e.ValueFrom == nil:
		case e.ValueFrom.FieldRef != nil:
			v, err := fieldRefValue(pod, e.ValueFrom.FieldRef.FieldPath, addrs)
			if err != nil {
				return nil, err
			}
			value = v
		case e.ValueFrom.ResourceFieldRef != nil:
			v, err := resourceFieldValue(c, e.ValueFrom.ResourceFieldRef, nodeCapacity)
			if err != nil {
				return nil, err
			}
			value = v
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			m, err := getConfigMap(ref.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && isTrue(ref.Optional) {
					continue
				}
				return nil, err
			}
			v, ok := m.Data[ref.Key]
			if !ok {
				if isTrue(ref.Optional) {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %v in ConfigMap %v/%v", ref.Key, pod.Namespace, ref.Name)
			}
			value = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s, err := getSecret(ref.Name)
			if err != nil {
				if apierrors.IsNotFound(err) && isTrue(ref.Optional) {
					continue
				}
				return nil, err
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				if isTrue(ref.Optional) {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %v in Secret %v/%v", ref.Key, pod.Namespace, ref.Name)
			}
			value = string(v)
		}
		env[e.Name] = value
	}
	for k, v := range serviceEnv {
		if _, set := env[k]; !set {
			env[k] = v
		}
	}
	return env, nil
}

func isTrue(b *bool) bool { return b != nil && *b }

// fieldRefValue is the downward API's value of a pod field
// (podFieldSelectorRuntimeValue and fieldpath.ExtractFieldPathAsString).
func fieldRefValue(pod *v1.Pod, path string, addrs podAddresses) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return addrs.HostIP, nil
	case "status.podIP", "status.podIPs":
		return addrs.PodIP, nil
	}
	if key, ok := subscript(path, "metadata.labels"); ok {
		return pod.Labels[key], nil
	}
	if key, ok := subscript(path, "metadata.annotations"); ok {
		return pod.Annotations[key], nil
	}
	return "", fmt.Errorf("unsupported fieldPath: %v", path)
}

// subscript reads `PREFIX['KEY']`.
func subscript(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix+"['")
	if !ok || !strings.HasSuffix(rest, "']") {
		return "", false
	}
	return strings.TrimSuffix(rest, "']"), true
}

// formatMap is the downward API's `key="value"` lines, sorted.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(k + "=" + strconv.Quote(m[k]))
	}
	return b.String()
}

// resourceFieldValue is the downward API's value of a container resource,
// limits defaulting to the node's allocatable, rounded up to the divisor
// (resource.ExtractContainerResourceValue).
func resourceFieldValue(c *v1.Container, ref *v1.ResourceFieldSelector, capacity v1.ResourceList) (string, error) {
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	var q resource.Quantity
	kind, name, ok := strings.Cut(ref.Resource, ".")
	if !ok {
		return "", fmt.Errorf("unsupported container resource: %v", ref.Resource)
	}
	rn := v1.ResourceName(name)
	switch kind {
	case "limits":
		if v, ok := c.Resources.Limits[rn]; ok {
			q = v
		} else {
			q = capacity[rn]
		}
	case "requests":
		if v, ok := c.Resources.Requests[rn]; ok {
			q = v
		} else if v, ok := c.Resources.Limits[rn]; ok {
			q = v
		}
	default:
		return "", fmt.Errorf("unsupported container resource: %v", ref.Resource)
	}
	if rn == v1.ResourceCPU {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), nil
}

// serviceEnv is the service link variables a pod in ns gets
// (getServiceEnvVarMap and envvars.FromServices): the `kubernetes`
// Service of `default` always, the namespace's own Services when
// enableServiceLinks; Services without a cluster IP are left out.
func serviceEnv(services []*v1.Service, ns string, enableServiceLinks bool) map[string]string {
	chosen := map[string]*v1.Service{}
	for _, s := range services {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == v1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		if s.Namespace == metav1.NamespaceDefault && s.Name == "kubernetes" {
			if _, ok := chosen[s.Name]; !ok {
				chosen[s.Name] = s
			}
		} else if s.Namespace == ns && enableServiceLinks {
			chosen[s.Name] = s
		}
	}
	env := map[string]string{}
	for _, s := range chosen {
		prefix := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		ip := s.Spec.ClusterIP
		env[prefix+"_SERVICE_HOST"] = ip
		env[prefix+"_SERVICE_PORT"] = strconv.Itoa(int(s.Spec.Ports[0].Port))
		for i, p := range s.Spec.Ports {
			if p.Name != "" {
				env[prefix+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))] = strconv.Itoa(int(p.Port))
			}
			proto := string(p.Protocol)
			if proto == "" {
				proto = string(v1.ProtocolTCP)
			}
			url := strings.ToLower(proto) + "://" + net.JoinHostPort(ip, strconv.Itoa(int(p.Port)))
			if i == 0 {
				env[prefix+"_PORT"] = url
			}
			pp := fmt.Sprintf("%s_PORT_%d_%s", prefix, p.Port, strings.ToUpper(proto))
			env[pp] = url
			env[pp+"_PROTO"] = strings.ToLower(proto)
			env[pp+"_PORT"] = strconv.Itoa(int(p.Port))
			env[pp+"_ADDR"] = ip
		}
	}
	return env
}

// envList is a map as NAME=VALUE lines, sorted by name.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
