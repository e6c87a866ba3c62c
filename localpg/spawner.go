package localpg

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
)

// spawner starts server processes from one goroutine locked to its OS thread. The kernel sends
// the parent-death signal (SIGKILL) when the thread that forked a child exits, not the process,
// and the Go runtime may retire an ordinary thread while the process lives on
// (go.dev/issue/27505); this thread lives until the Group has stopped every server.
type spawner struct {
	requests chan spawnRequest
	done     chan struct{}
	mu       sync.Mutex
	stopped  bool
}

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

func startSpawner() *spawner {
	s := &spawner{requests: make(chan spawnRequest), done: make(chan struct{})}
	go func() {
		// Never unlocked: when this goroutine returns, the runtime ends the thread, and with it
		// (through the parent-death signal) any server that was somehow left running.
		runtime.LockOSThread()
		defer close(s.done)
		for r := range s.requests {
			r.result <- r.cmd.Start()
		}
	}()
	return s
}

var errStopped = errors.New("localpg: the group was stopped; no server can start")

func (s *spawner) start(cmd *exec.Cmd) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopped
	}
	r := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	s.requests <- r
	return <-r.result
}

func (s *spawner) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return
	}
	s.stopped = true
	close(s.requests)
	<-s.done
}
