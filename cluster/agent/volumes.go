package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// volumeFiles is a file a volume holds: its path in the volume, content
// and mode.
type volumeFile struct {
	path string
	data []byte
	mode os.FileMode
}

// tokenRefresh is a service account token a volume holds, refreshed by
// the pod's worker before it expires.
type tokenRefresh struct {
	dir       string // the volume's directory
	path      string // the file in it
	mode      os.FileMode
	account   string
	source    v1.ServiceAccountTokenProjection
	refreshAt time.Time
}

// podVolumes writes the pod's volumes under dir/volumes, as the kubelet's
// volume plugins do (pkg/volume/{secret,configmap,downwardapi,projected,
// emptydir,hostpath}); it returns where each volume's content is.
type podVolumes struct {
	client kubernetes.Interface
	pod    *v1.Pod
	dir    string
	addrs  podAddresses
	paths  map[string]string // volume name -> host path
	tokens []*tokenRefresh
}

func (pv *podVolumes) setUp(ctx context.Context) error {
	pv.paths = map[string]string{}
	for _, vol := range pv.pod.Spec.Volumes {
		dir := filepath.Join(pv.dir, "volumes", vol.Name)
		var files []volumeFile
		var err error
		mode := func(m *int32) os.FileMode {
			if m == nil {
				return 0o644
			}
			return os.FileMode(*m)
		}
		readOnly := true
		switch {
		case vol.EmptyDir != nil:
			// The emptydir plugin's: 0777 whatever the umask.
			if err = os.MkdirAll(dir, 0o777); err == nil {
				err = os.Chmod(dir, 0o777)
			}
			readOnly = false
		case vol.HostPath != nil:
			dir = vol.HostPath.Path
			if vol.HostPath.Type != nil && *vol.HostPath.Type == v1.HostPathDirectoryOrCreate {
				err = os.MkdirAll(dir, 0o755)
			} else if _, statErr := os.Stat(dir); statErr != nil && vol.HostPath.Type != nil && *vol.HostPath.Type != v1.HostPathUnset {
				err = fmt.Errorf("hostPath type check failed: %s is not a %s", dir, *vol.HostPath.Type)
			}
		case vol.Secret != nil:
			files, err = pv.secretFiles(ctx, vol.Secret.SecretName, vol.Secret.Items, vol.Secret.Optional, mode(vol.Secret.DefaultMode))
		case vol.ConfigMap != nil:
			files, err = pv.configMapFiles(ctx, vol.ConfigMap.Name, vol.ConfigMap.Items, vol.ConfigMap.Optional, mode(vol.ConfigMap.DefaultMode))
		case vol.DownwardAPI != nil:
			files, err = pv.downwardFiles(vol.DownwardAPI.Items, mode(vol.DownwardAPI.DefaultMode))
		case vol.Projected != nil:
			files, err = pv.projectedFiles(ctx, dir, vol.Projected, mode(vol.Projected.DefaultMode))
		default:
			err = fmt.Errorf("volume type not supported by the bodywork node agent")
		}
		if err == nil && files != nil {
			err = writeVolume(dir, files)
		}
		if err == nil && vol.HostPath == nil {
			err = setVolumeOwnership(dir, fsGroupOf(pv.pod), readOnly)
		}
		if err != nil {
			return fmt.Errorf("MountVolume.SetUp failed for volume %q : %v", vol.Name, err)
		}
		pv.paths[vol.Name] = dir
	}
	return nil
}

func writeVolume(dir string, files []volumeFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.path), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic replaces path by a rename, so a reader sees the old or
// the new content, never part of it.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func keyFiles(data map[string][]byte, items []v1.KeyToPath, mode os.FileMode, missingKey string) ([]volumeFile, error) {
	var out []volumeFile
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, volumeFile{path: k, data: data[k], mode: mode})
		}
		return out, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf(missingKey, it.Key)
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		out = append(out, volumeFile{path: it.Path, data: v, mode: m})
	}
	return out, nil
}

func (pv *podVolumes) secretFiles(ctx context.Context, name string, items []v1.KeyToPath, optional *bool, mode os.FileMode) ([]volumeFile, error) {
	s, err := pv.client.CoreV1().Secrets(pv.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && isTrue(optional) {
			return []volumeFile{}, nil
		}
		return nil, err
	}
	return keyFiles(s.Data, items, mode, "references non-existent secret key: %s")
}

func (pv *podVolumes) configMapFiles(ctx context.Context, name string, items []v1.KeyToPath, optional *bool, mode os.FileMode) ([]volumeFile, error) {
	m, err := pv.client.CoreV1().ConfigMaps(pv.pod.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && isTrue(optional) {
			return []volumeFile{}, nil
		}
		return nil, err
	}
	data := map[string][]byte{}
	for k, v := range m.Data {
		data[k] = []byte(v)
	}
	for k, v := range m.BinaryData {
		data[k] = v
	}
	return keyFiles(data, items, mode, "configmap references non-existent config key: %s")
}

func (pv *podVolumes) downwardFiles(items []v1.DownwardAPIVolumeFile, mode os.FileMode) ([]volumeFile, error) {
	var out []volumeFile
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = fieldRefValue(pv.pod, it.FieldRef.FieldPath, pv.addrs)
		case it.ResourceFieldRef != nil:
			c := findContainer(pv.pod, it.ResourceFieldRef.ContainerName)
			if c == nil {
				return nil, fmt.Errorf("container %q not found", it.ResourceFieldRef.ContainerName)
			}
			v, err = resourceFieldValue(c, it.ResourceFieldRef, nil)
		}
		if err != nil {
			return nil, err
		}
		m := mode
		if it.Mode != nil {
			m = os.FileMode(*it.Mode)
		}
		out = append(out, volumeFile{path: it.Path, data: []byte(v), mode: m})
	}
	return out, nil
}

func (pv *podVolumes) projectedFiles(ctx context.Context, dir string, p *v1.ProjectedVolumeSource, mode os.FileMode) ([]volumeFile, error) {
	out := []volumeFile{}
	for _, src := range p.Sources {
		var files []volumeFile
		var err error
		switch {
		case src.Secret != nil:
			files, err = pv.secretFiles(ctx, src.Secret.Name, src.Secret.Items, src.Secret.Optional, mode)
		case src.ConfigMap != nil:
			files, err = pv.configMapFiles(ctx, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, mode)
		case src.DownwardAPI != nil:
			files, err = pv.downwardFiles(src.DownwardAPI.Items, mode)
		case src.ServiceAccountToken != nil:
			t := &tokenRefresh{dir: dir, path: src.ServiceAccountToken.Path, mode: mode,
				account: pv.pod.Spec.ServiceAccountName, source: *src.ServiceAccountToken}
			var token []byte
			token, err = pv.requestToken(ctx, t)
			files = []volumeFile{{path: t.path, data: token, mode: mode}}
			pv.tokens = append(pv.tokens, t)
		default:
			err = fmt.Errorf("projected volume source not supported by the bodywork node agent")
		}
		if err != nil {
			return nil, err
		}
		out = append(out, files...)
	}
	return out, nil
}

// requestToken asks the TokenRequest API for a token of the pod's
// service account bound to the pod, as the kubelet's token manager does,
// and notes when to refresh it (80 % of its requested life).
func (pv *podVolumes) requestToken(ctx context.Context, t *tokenRefresh) ([]byte, error) {
	seconds := int64(3600)
	if t.source.ExpirationSeconds != nil {
		seconds = *t.source.ExpirationSeconds
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &seconds,
		BoundObjectRef: &authenticationv1.BoundObjectReference{
			APIVersion: "v1", Kind: "Pod", Name: pv.pod.Name, UID: pv.pod.UID,
		},
	}}
	if t.source.Audience != "" {
		req.Spec.Audiences = []string{t.source.Audience}
	}
	account := t.account
	if account == "" {
		account = "default"
	}
	resp, err := pv.client.CoreV1().ServiceAccounts(pv.pod.Namespace).CreateToken(ctx, account, req, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to fetch token: %v", err)
	}
	t.refreshAt = time.Now().Add(time.Duration(float64(seconds)*0.8) * time.Second)
	if day := time.Now().Add(24 * time.Hour); t.refreshAt.After(day) {
		t.refreshAt = day
	}
	return []byte(resp.Status.Token), nil
}

// refreshTokens rewrites the tokens due; it returns when the next is due.
func (pv *podVolumes) refreshTokens(ctx context.Context) (time.Time, error) {
	var next time.Time
	for _, t := range pv.tokens {
		if time.Now().After(t.refreshAt) {
			token, err := pv.requestToken(ctx, t)
			if err != nil {
				return time.Now().Add(10 * time.Second), err
			}
			if err := writeFileAtomic(filepath.Join(t.dir, t.path), token, t.mode); err != nil {
				return time.Now().Add(10 * time.Second), err
			}
			if err := setVolumeOwnership(filepath.Join(t.dir, t.path), fsGroupOf(pv.pod), true); err != nil {
				return time.Now().Add(10 * time.Second), err
			}
		}
		if next.IsZero() || t.refreshAt.Before(next) {
			next = t.refreshAt
		}
	}
	return next, nil
}

// containerMounts is where each of the container's volume mounts comes
// from; missing mount points are created on the host (and recorded).
func (pv *podVolumes) containerMounts(c *v1.Container, points *mountPoints) ([]bindMount, error) {
	var out []bindMount
	for _, vm := range c.VolumeMounts {
		src, ok := pv.paths[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volume %q not found", vm.Name)
		}
		if vm.SubPath != "" {
			src = filepath.Join(src, vm.SubPath)
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		if err := points.ensure(vm.MountPath, !st.IsDir()); err != nil {
			return nil, err
		}
		out = append(out, bindMount{Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	return out, nil
}

func findContainer(pod *v1.Pod, name string) *v1.Container {
	for i := range pod.Spec.Containers {
		if name == "" || pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}

// mountPoints creates the directories (and files) bind mounts need on the
// host's file system and remembers them, in a file of the state directory
// too, so that the agent's stop and --cleanup remove them again.
type mountPoints struct {
	mu      sync.Mutex
	record  string
	created []string
}

func (m *mountPoints) ensure(path string, file bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	path = filepath.Clean(path)
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var missing []string
	for p := filepath.Dir(path); p != "/"; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			break
		}
		missing = append([]string{p}, missing...)
	}
	for _, p := range missing {
		if err := os.Mkdir(p, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		m.add(p)
	}
	var err error
	if file {
		var f *os.File
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			_ = f.Close()
		}
	} else {
		err = os.Mkdir(path, 0o755)
	}
	if err != nil && !os.IsExist(err) {
		return err
	}
	m.add(path)
	return nil
}

func (m *mountPoints) add(p string) {
	m.created = append(m.created, p)
	f, err := os.OpenFile(m.record, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err == nil {
		_, _ = f.WriteString(p + "\n")
		_ = f.Close()
	}
}

// removeMountPoints removes what a record lists, deepest first, when empty.
func removeMountPoints(record string) []string {
	b, err := os.ReadFile(record)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var removed []string
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i] != "" && os.Remove(lines[i]) == nil {
			removed = append(removed, lines[i])
		}
	}
	_ = os.Remove(record)
	return removed
}
