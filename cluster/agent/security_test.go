package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

// restrictedPod is a pod as bodywork makes them (the `restricted` Pod
// Security Standard): the user, group and fsGroup 1000, non-root, no
// privilege escalation, every capability dropped.
func restrictedPod() *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"},
		Spec: v1.PodSpec{
			SecurityContext: &v1.PodSecurityContext{
				RunAsNonRoot: ptr(true), RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(1000)),
				FSGroup: ptr(int64(1000)), SupplementalGroups: []int64{3000, 1000},
				SeccompProfile: &v1.SeccompProfile{Type: v1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []v1.Container{{Name: "c", SecurityContext: &v1.SecurityContext{
				AllowPrivilegeEscalation: ptr(false),
				Capabilities:             &v1.Capabilities{Drop: []v1.Capability{"ALL"}},
			}}},
		},
	}
}

func TestContainerIdentityIsTheKubeletsEffectiveSecurityContext(t *testing.T) {
	pod := restrictedPod()
	id, err := containerIdentity(pod, &pod.Spec.Containers[0])
	if err != nil {
		t.Fatal(err)
	}
	want := identity{UID: 1000, GID: 1000, Groups: []uint32{1000, 3000}, NoNewPrivs: true, DropAll: true}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("restricted pod: %+v, want %+v", id, want)
	}
	if got := id.setprivArgs(); !reflect.DeepEqual(got, []string{"setpriv", "--reuid=1000", "--regid=1000",
		"--groups=1000,3000", "--no-new-privs", "--bounding-set=-all", "--"}) {
		t.Errorf("setpriv: %q", got)
	}

	// The container's settings over the pod's.
	c := v1.Container{Name: "c", SecurityContext: &v1.SecurityContext{RunAsUser: ptr(int64(2000)), RunAsGroup: ptr(int64(2001))}}
	if id, err := containerIdentity(pod, &c); err != nil || id.UID != 2000 || id.GID != 2001 || id.NoNewPrivs || id.DropAll {
		t.Errorf("container over pod: %+v %v", id, err)
	}

	// Nothing said: the image's user, root, as before.
	plain := &v1.Pod{Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c"}}}}
	if id, err := containerIdentity(plain, &plain.Spec.Containers[0]); err != nil || !reflect.DeepEqual(id, identity{}) {
		t.Errorf("no security context: %+v %v", id, err)
	}
	if got := (identity{}).setprivArgs(); !reflect.DeepEqual(got, []string{"setpriv", "--reuid=0", "--regid=0", "--clear-groups", "--"}) {
		t.Errorf("setpriv for root: %q", got)
	}
	// A user without a group: gid 0, as runc gives a uid the image does not list.
	plain.Spec.SecurityContext = &v1.PodSecurityContext{RunAsUser: ptr(int64(1000))}
	if id, err := containerIdentity(plain, &plain.Spec.Containers[0]); err != nil || id.UID != 1000 || id.GID != 0 {
		t.Errorf("user only: %+v %v", id, err)
	}
	// allowPrivilegeEscalation true: no no_new_privs.
	c = v1.Container{Name: "c", SecurityContext: &v1.SecurityContext{AllowPrivilegeEscalation: ptr(true)}}
	if id, _ := containerIdentity(plain, &c); id.NoNewPrivs {
		t.Errorf("no_new_privs with allowPrivilegeEscalation true")
	}
}

func TestRunAsNonRootIsRefusedAsTheKubeletRefusesIt(t *testing.T) {
	// No user: the image's, root.
	pod := restrictedPod()
	pod.Spec.SecurityContext.RunAsUser = nil
	_, err := containerIdentity(pod, &pod.Spec.Containers[0])
	want := `container has runAsNonRoot and image will run as root (pod: "p_ns(u1)", container: c)`
	if err == nil || err.Error() != want {
		t.Errorf("runAsNonRoot without a user: %v, want %s", err, want)
	}
	// The container asks for uid 0.
	pod = restrictedPod()
	pod.Spec.Containers[0].SecurityContext.RunAsUser = ptr(int64(0))
	_, err = containerIdentity(pod, &pod.Spec.Containers[0])
	want = `container's runAsUser breaks non-root policy (pod: "p_ns(u1)", container: c)`
	if err == nil || err.Error() != want {
		t.Errorf("runAsNonRoot with uid 0: %v, want %s", err, want)
	}
	// The container allows root again: no check.
	pod = restrictedPod()
	pod.Spec.SecurityContext.RunAsUser = nil
	pod.Spec.Containers[0].SecurityContext.RunAsNonRoot = ptr(false)
	if id, err := containerIdentity(pod, &pod.Spec.Containers[0]); err != nil || id.UID != 0 {
		t.Errorf("runAsNonRoot false in the container: %+v %v", id, err)
	}
	// Not an id.
	pod = restrictedPod()
	pod.Spec.SecurityContext.RunAsUser = ptr(int64(-1))
	if _, err := containerIdentity(pod, &pod.Spec.Containers[0]); err == nil {
		t.Errorf("runAsUser -1 accepted")
	}
}

func TestVolumeOwnershipIsTheFSGroups(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "sub", "f")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := setVolumeOwnership(dir, nil, false); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o600 {
		t.Errorf("changed without an fsGroup: %v", st.Mode())
	}
	gid := int64(4242)
	if err := setVolumeOwnership(dir, &gid, false); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: os.ModeDir | os.ModeSetgid | 0o775, filepath.Join(dir, "sub"): os.ModeDir | os.ModeSetgid | 0o775, file: 0o660} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, st.Mode(), want)
		}
		if g := groupOf(st); g != 4242 {
			t.Errorf("%s: group %d", path, g)
		}
	}
	if err := os.Chmod(file, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := setVolumeOwnership(dir, &gid, true); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(file); st.Mode().Perm() != 0o640 {
		t.Errorf("read-only volume: %v, want 0640", st.Mode())
	}
}

func groupOf(st os.FileInfo) uint32 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Gid
	}
	return 1<<32 - 1
}
