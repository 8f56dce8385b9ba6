package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// helperEnv marks the agent's own binary, re-executed, as the helper that
// turns into a container: it is started in new mount and UTS namespaces
// and its own process group, sets them up, joins the pod's network
// namespace and executes the container's command.
const helperEnv = "BODYWORK_NODE_AGENT_EXEC"

// execSpec is what the helper reads on fd 3.
type execSpec struct {
	Argv     []string    `json:"argv"`
	Env      []string    `json:"env"`
	Dir      string      `json:"dir"`
	Hostname string      `json:"hostname,omitempty"`
	NetNS    string      `json:"netns,omitempty"` // a path; empty: the host's
	Mounts   []bindMount `json:"mounts,omitempty"`
	User     identity    `json:"user"`
}

type bindMount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// RunHelperIfRequested turns this process into a container when the agent
// started it as one, and never returns then. A multi-call binary that
// embeds the agent calls it first thing in main.
func RunHelperIfRequested() {
	if os.Getenv(helperEnv) == "" {
		return
	}
	status := os.NewFile(4, "status")
	err := runHelper(status)
	// Only reached when the command could not be started: the agent reads
	// this as the container's StartError (exit code 128, as runc's).
	fmt.Fprintf(status, "failed to start container process: %v", err)
	os.Exit(128)
}

func runHelper(status *os.File) error {
	unix.CloseOnExec(int(status.Fd()))
	in := os.NewFile(3, "spec")
	var spec execSpec
	if err := json.NewDecoder(in).Decode(&spec); err != nil {
		return fmt.Errorf("reading the container spec: %v", err)
	}
	_ = in.Close()
	if len(spec.Argv) == 0 {
		return errors.New("no command: the pod names none and the image has none")
	}
	// setns applies to this thread only; exec happens on it.
	runtime.LockOSThread()
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %v", err)
		}
	}
	for _, m := range spec.Mounts {
		if err := unix.Mount(m.Source, m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("mounting %s on %s: %v", m.Source, m.Target, err)
		}
		if m.ReadOnly {
			flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
			if err := unix.Mount("", m.Target, "", flags, ""); err != nil {
				return fmt.Errorf("making %s read-only: %v", m.Target, err)
			}
		}
	}
	if spec.NetNS != "" {
		fd, err := unix.Open(spec.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening the pod's network namespace: %v", err)
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("joining the pod's network namespace: %v", err)
		}
		_ = unix.Close(fd)
	}
	if err := becomeUser(spec.User); err != nil {
		return err
	}
	// As runc does: after the user is set, so that the directory is
	// checked as that user.
	if err := os.Chdir(spec.Dir); err != nil {
		return fmt.Errorf("chdir to %s: %v", spec.Dir, err)
	}
	path, err := lookPath(spec.Argv[0], envValue(spec.Env, "PATH"))
	if err != nil {
		return err
	}
	return unix.Exec(path, spec.Argv, spec.Env)
}

// becomeUser drops what the helper holds as root, as runc's init does
// before it executes the container's command: the capability bounding
// set emptied for `drop: [ALL]` (no process of the container can gain a
// capability again, even as root), the supplementary groups, group and
// user set (a non-root user keeps no capability across setuid and gets
// none at exec), and no_new_privs for `allowPrivilegeEscalation: false`
// (setuid binaries and file capabilities grant nothing). The bounding set
// and no_new_privs are per thread: this one, locked, executes the command.
func becomeUser(u identity) error {
	if u.DropAll {
		for c := 0; c <= lastCap(); c++ {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
				return fmt.Errorf("dropping capability %d: %v", c, err)
			}
		}
	}
	groups := make([]int, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups %v: %v", u.Groups, err)
	}
	if err := syscall.Setgid(int(u.GID)); err != nil {
		return fmt.Errorf("setgid %d: %v", u.GID, err)
	}
	if err := syscall.Setuid(int(u.UID)); err != nil {
		return fmt.Errorf("setuid %d: %v", u.UID, err)
	}
	if u.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("setting no_new_privs: %v", err)
		}
	}
	return nil
}

// lookPath finds a command as execvp does, in the container's PATH, with
// runc's messages.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", fmt.Errorf("exec: %q: %v", name, err)
		}
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

func executable(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return errors.Unwrap(err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return unix.EACCES
	}
	return nil
}

func envValue(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v
		}
	}
	return ""
}

// readStartError returns what the helper wrote before exiting, or nil
// when the status pipe closed empty (the command was executed).
func readStartError(r io.Reader) error {
	b, _ := io.ReadAll(r)
	if len(b) == 0 {
		return nil
	}
	return errors.New(string(b))
}
