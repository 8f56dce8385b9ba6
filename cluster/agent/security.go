package agent

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// identity is who a container's process runs as and what it may do, as
// the kubelet derives it from the pod's and the container's
// securityContext (pkg/kubelet/kuberuntime/security_context.go) and runc
// applies it: user, group, supplementary groups, no_new_privs, and the
// capability bounding set emptied for `drop: [ALL]`.
type identity struct {
	UID        uint32   `json:"uid"`
	GID        uint32   `json:"gid"`
	Groups     []uint32 `json:"groups,omitempty"`
	NoNewPrivs bool     `json:"noNewPrivs,omitempty"`
	DropAll    bool     `json:"dropAllCapabilities,omitempty"`
}

// The one image has no user of its own (no USER, no /etc/passwd): it
// runs as root, uid 0 and gid 0, unless the pod says otherwise.
const imageUID, imageGID = 0, 0

// effectiveSecurityContext is securitycontext.DetermineEffectiveSecurityContext
// for the fields the agent honours: the container's settings over the pod's.
func effectiveSecurityContext(pod *v1.Pod, c *v1.Container) v1.SecurityContext {
	var sc v1.SecurityContext
	if p := pod.Spec.SecurityContext; p != nil {
		sc.RunAsUser, sc.RunAsGroup, sc.RunAsNonRoot = p.RunAsUser, p.RunAsGroup, p.RunAsNonRoot
	}
	cs := c.SecurityContext
	if cs == nil {
		return sc
	}
	if cs.RunAsUser != nil {
		sc.RunAsUser = cs.RunAsUser
	}
	if cs.RunAsGroup != nil {
		sc.RunAsGroup = cs.RunAsGroup
	}
	if cs.RunAsNonRoot != nil {
		sc.RunAsNonRoot = cs.RunAsNonRoot
	}
	sc.AllowPrivilegeEscalation = cs.AllowPrivilegeEscalation
	sc.Capabilities = cs.Capabilities
	return sc
}

// containerIdentity is who the container runs as, or the kubelet's
// verifyRunAsNonRoot error (a CreateContainerConfigError) when the pod
// demands a non-root user it would not get. Supplementary groups are the
// pod's fsGroup then its supplementalGroups; the group, when runAsGroup
// is unset, is 0 (runc's for a user the image's /etc/passwd does not list).
func containerIdentity(pod *v1.Pod, c *v1.Container) (identity, error) {
	sc := effectiveSecurityContext(pod, c)
	if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot {
		switch {
		case sc.RunAsUser != nil && *sc.RunAsUser == 0:
			return identity{}, fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podFullName(pod), c.Name)
		case sc.RunAsUser == nil: // the image's user, root
			return identity{}, fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podFullName(pod), c.Name)
		}
	}
	id := identity{UID: imageUID, GID: imageGID}
	var err error
	if sc.RunAsUser != nil {
		if id.UID, err = idValue("runAsUser", *sc.RunAsUser); err != nil {
			return identity{}, err
		}
	}
	if sc.RunAsGroup != nil {
		if id.GID, err = idValue("runAsGroup", *sc.RunAsGroup); err != nil {
			return identity{}, err
		}
	}
	if p := pod.Spec.SecurityContext; p != nil {
		groups := p.SupplementalGroups
		if p.FSGroup != nil {
			groups = append([]int64{*p.FSGroup}, groups...)
		}
		for _, g := range groups {
			gid, err := idValue("supplementalGroups", g)
			if err != nil {
				return identity{}, err
			}
			if !slices.Contains(id.Groups, gid) {
				id.Groups = append(id.Groups, gid)
			}
		}
	}
	// securitycontext.AddNoNewPrivileges: only when set, and false.
	id.NoNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	if sc.Capabilities != nil {
		for _, d := range sc.Capabilities.Drop {
			id.DropAll = id.DropAll || strings.EqualFold(string(d), "ALL")
		}
	}
	return id, nil
}

func idValue(field string, v int64) (uint32, error) {
	if v < 0 || v > 1<<31-1 {
		return 0, fmt.Errorf("%s %d is not a valid id (0-%d)", field, v, 1<<31-1)
	}
	return uint32(v), nil
}

// setprivArgs is util-linux setpriv running a command as u does (for exec
// probes, which nsenter starts in the container's namespaces as root).
func (u identity) setprivArgs() []string {
	args := []string{"setpriv", "--reuid=" + strconv.Itoa(int(u.UID)), "--regid=" + strconv.Itoa(int(u.GID))}
	if len(u.Groups) == 0 {
		args = append(args, "--clear-groups")
	} else {
		groups := make([]string, len(u.Groups))
		for i, g := range u.Groups {
			groups[i] = strconv.Itoa(int(g))
		}
		args = append(args, "--groups="+strings.Join(groups, ","))
	}
	if u.NoNewPrivs {
		args = append(args, "--no-new-privs")
	}
	if u.DropAll {
		args = append(args, "--bounding-set=-all")
	}
	return append(args, "--")
}

// fsGroupOf is the pod's fsGroup, if it has one.
func fsGroupOf(pod *v1.Pod) *int64 {
	if pod.Spec.SecurityContext == nil {
		return nil
	}
	return pod.Spec.SecurityContext.FSGroup
}

// setVolumeOwnership is the kubelet's volume.SetVolumeOwnership for a
// pod with an fsGroup: every file and directory of the volume gets that
// group, read and write for it (read only for the read-only volume types:
// secret, configMap, downwardAPI, projected), directories also execute
// and setgid so that what the containers create there keeps the group.
func setVolumeOwnership(dir string, fsGroup *int64, readOnly bool) error {
	if fsGroup == nil {
		return nil
	}
	mask := os.FileMode(0o660)
	if readOnly {
		mask = 0o440
	}
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, -1, int(*fsGroup)); err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		m := mask
		if d.IsDir() {
			m |= os.ModeSetgid | 0o110
		}
		return os.Chmod(path, info.Mode()&(fs.ModePerm|os.ModeSetgid)|m)
	})
}

// lastCap is the highest capability this kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40 // CAP_CHECKPOINT_RESTORE, Linux 5.9
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 40
	}
	return n
}
