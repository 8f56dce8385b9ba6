package agent

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// instance is one run of a container: a process group whose leader is
// the container's command, its output going to one CRI log file.
type instance struct {
	id        string // hex, like a runtime's container ID
	attempt   int32
	logPath   string
	pid       int
	startedAt time.Time

	done    chan struct{} // closed once the process has exited
	drained chan struct{} // closed once all its output is in the log

	// Set before done is closed.
	finishedAt time.Time
	exitCode   int32
	reason     string
	message    string

	ready   atomic.Bool // readiness probe
	started atomic.Bool // startup probe
	probes  func()      // stops the probes
	env     []string    // for exec probes
	dir     string
	user    identity
}

func (i *instance) exited() bool {
	select {
	case <-i.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the container's process group.
func (i *instance) signal(sig syscall.Signal) {
	_ = syscall.Kill(-i.pid, sig)
}

// stop sends SIGTERM to the container's main process only, as a container
// runtime does (runc signals the container's init, PID 1; what that process
// started is its to stop), then SIGKILL to the whole group once grace has
// passed or once the main process has gone (runc kills every process of the
// container when its init exits), and returns when the main process has
// exited (or 10 s after SIGKILL).
func (i *instance) stop(grace time.Duration) {
	if i.exited() {
		return
	}
	_ = syscall.Kill(i.pid, syscall.SIGTERM)
	select {
	case <-i.done:
		// The leader is gone; what it left in its group goes now.
		i.signal(syscall.SIGKILL)
		return
	case <-time.After(grace):
	}
	i.signal(syscall.SIGKILL)
	select {
	case <-i.done:
	case <-time.After(10 * time.Second):
	}
}

func newContainerID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startInstance starts the agent's own binary as the helper that becomes
// the container (see helper.go), in its own process group and new mount
// and UTS namespaces, its stdout and stderr written to logPath in the CRI
// format. A command that cannot be executed still yields an instance,
// exited with 128 and StartError, as containerd reports it. onExit is
// called once the process has exited.
func startInstance(spec execSpec, logPath string, attempt int32, onExit func()) (*instance, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		_ = logFile.Close()
		return nil, err
	}
	var pipes [4][2]*os.File // stdout, stderr, spec, status: {read, write}
	for k := range pipes {
		if pipes[k][0], pipes[k][1], err = os.Pipe(); err != nil {
			_ = logFile.Close()
			return nil, err
		}
	}
	cmd := &exec.Cmd{
		Path:       self,
		Args:       []string{"bodywork-node-agent-exec"},
		Env:        []string{helperEnv + "=1"},
		Stdout:     pipes[0][1],
		Stderr:     pipes[1][1],
		ExtraFiles: []*os.File{pipes[2][0], pipes[3][1]},
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:      true,
			Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
		},
	}
	err = cmd.Start()
	for _, f := range []*os.File{pipes[0][1], pipes[1][1], pipes[2][0], pipes[3][1]} {
		_ = f.Close()
	}
	if err != nil {
		for _, f := range []*os.File{pipes[0][0], pipes[1][0], pipes[2][1], pipes[3][0], logFile} {
			_ = f.Close()
		}
		return nil, err
	}
	inst := &instance{
		id: newContainerID(), attempt: attempt, logPath: logPath, pid: cmd.Process.Pid,
		done: make(chan struct{}), drained: make(chan struct{}),
		env: spec.Env, dir: spec.Dir, user: spec.User,
	}
	go func() {
		_ = json.NewEncoder(pipes[2][1]).Encode(spec)
		_ = pipes[2][1].Close()
	}()
	startErr := readStartError(pipes[3][0])
	_ = pipes[3][0].Close()
	inst.startedAt = time.Now()

	log := &criLog{f: logFile}
	var copying sync.WaitGroup
	copying.Add(2)
	go log.copy(pipes[0][0], "stdout", &copying)
	go log.copy(pipes[1][0], "stderr", &copying)
	go func() {
		copying.Wait()
		_ = logFile.Close()
		close(inst.drained)
	}()
	go func() {
		err := cmd.Wait()
		inst.finishedAt = time.Now()
		inst.exitCode = exitCode(cmd, err)
		if startErr != nil {
			inst.exitCode, inst.reason, inst.message = 128, reasonStartError, startErr.Error()
		}
		close(inst.done)
		onExit()
	}()
	return inst, nil
}

// exitCode as a runtime reports it: the status, or 128+signal.
func exitCode(cmd *exec.Cmd, err error) int32 {
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return 128
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(cmd.ProcessState.ExitCode())
}

// criLog writes a container's output as containerd does: one record per
// line, `TIMESTAMP STREAM TAG CONTENT`, TAG F for a full line and P for
// a part of a line longer than 16 KiB.
type criLog struct {
	mu sync.Mutex
	f  *os.File
}

const criTime = "2006-01-02T15:04:05.000000000Z07:00"

func (l *criLog) copy(r io.ReadCloser, stream string, wg *sync.WaitGroup) {
	defer wg.Done()
	defer r.Close()
	br := bufio.NewReaderSize(r, 16*1024)
	for {
		line, isPrefix, err := br.ReadLine()
		if err != nil {
			return
		}
		tag := " F "
		if isPrefix {
			tag = " P "
		}
		rec := make([]byte, 0, len(line)+48)
		rec = time.Now().UTC().AppendFormat(rec, criTime)
		rec = append(rec, ' ')
		rec = append(rec, stream...)
		rec = append(rec, tag...)
		rec = append(rec, line...)
		rec = append(rec, '\n')
		l.mu.Lock()
		_, _ = l.f.Write(rec)
		l.mu.Unlock()
	}
}
