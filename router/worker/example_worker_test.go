package worker_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/braidq/braid/engine"
	"github.com/braidq/braid/router/worker"
)

// SendEmailArgs are a job's arguments: a struct encoded as JSON whose Kind names the worker.
// The producer inserts the same type with router.Client.Insert.
type SendEmailArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

func (SendEmailArgs) Kind() string { return "send_email" }

// SendEmailWorker embeds WorkerDefaults and overrides the timeout.
type SendEmailWorker struct {
	worker.WorkerDefaults[SendEmailArgs]
}

func (*SendEmailWorker) Timeout(*worker.Job[SendEmailArgs]) time.Duration { return 30 * time.Second }

var errMailboxFull = errors.New("smtp 452: mailbox full")

// Work decides what becomes of the job by what it returns.
func (*SendEmailWorker) Work(ctx context.Context, job *worker.Job[SendEmailArgs]) error {
	switch job.Args.To {
	case "":
		return worker.JobDiscard(errors.New("no recipient")) // no retry can help: dead-letter now
	case "left@example.com":
		return worker.JobCancel(errors.New("account closed")) // cancelled for good
	case "busy@example.com":
		return worker.JobSnooze(time.Minute) // later, without using up an attempt
	case "full@example.com":
		return worker.RetryAfter(time.Hour, errMailboxFull) // a retry, on the server's schedule
	}
	fmt.Printf("attempt %d: mail %q to %s\n", job.Attempt, job.Args.Subject, job.Args.To)
	return nil // completed
}

// Register a worker per kind: AddWorker panics on a duplicate kind, as in River.
func ExampleAddWorker() {
	workers := worker.NewWorkers()
	worker.AddWorker(workers, &SendEmailWorker{})
	fmt.Println(workers.Kinds())
	// Output: [send_email]
}

type ResizeArgs struct {
	Image string `json:"image"`
	Width int    `json:"width"`
}

func (ResizeArgs) Kind() string { return "resize" }

// A worker can be a plain function. An ordinary error is retried with exponential backoff
// until the job's attempts run out; the error and the attempt number join the job's history.
func ExampleWorkFunc() {
	workers := worker.NewWorkers()
	worker.AddWorker(workers, worker.WorkFunc(func(ctx context.Context, job *worker.Job[ResizeArgs]) error {
		if job.Args.Width <= 0 {
			return fmt.Errorf("resize %s: width %d must be > 0", job.Args.Image, job.Args.Width)
		}
		return nil
	}))

	res := workers.Execute(context.Background(), claimed("resize", `{"image":"cat.png","width":0}`), time.Minute)
	fmt.Println(res.Action, "-", res.Failure.Error)
	// Output: fail - resize cat.png: width 0 must be > 0
}

// What each result of a handler becomes. A node calls Execute for every claimed attempt and
// hands the Result to its Acker, which delivers it to the job's shard in batches.
func ExampleWorkers_Execute() {
	workers := worker.NewWorkers()
	worker.AddWorker(workers, &SendEmailWorker{})

	for _, to := range []string{"ada@example.com", "busy@example.com", "full@example.com", "left@example.com", ""} {
		res := workers.Execute(context.Background(), claimed("send_email", fmt.Sprintf(`{"to":%q,"subject":"hi"}`, to)), time.Minute)
		fmt.Printf("%-18q -> %s", to, res.Action)
		switch res.Action {
		case worker.Snooze:
			fmt.Printf(" for %s", res.Snooze)
		case worker.Fail:
			fmt.Printf(" (retry after %s, terminal %t): %s", res.Failure.RetryAfter, res.Failure.Terminal, res.Failure.Error)
		}
		var cancel *worker.JobCancelError
		if errors.As(res.Err, &cancel) {
			fmt.Printf(": %v", cancel.Err)
		}
		fmt.Println()
	}
	res := workers.Execute(context.Background(), claimed("send_sms", `{}`), time.Minute)
	fmt.Println("send_sms ->", res.Action, "terminal", res.Failure.Terminal, "-", res.Failure.Error)
	// Output:
	// attempt 1: mail "hi" to ada@example.com
	// "ada@example.com"  -> complete
	// "busy@example.com" -> snooze for 1m0s
	// "full@example.com" -> fail (retry after 1h0m0s, terminal false): retry after 1h0m0s: smtp 452: mailbox full
	// "left@example.com" -> cancel: account closed
	// ""                 -> fail (retry after 0s, terminal true): job discarded: no recipient
	// send_sms -> fail terminal true - no worker registered for kind "send_sms"
}

// claimed stands in for an attempt a node claimed from a shard (engine.Engine.Claim).
func claimed(kind, args string) engine.Claimed {
	return engine.Claimed{
		Receipt: engine.Receipt{ShardID: 1, ClaimSlot: 0, BatchID: 1, Index: 1, JobID: 1 << 48, RunLease: 1},
		Queue:   "default", Kind: kind, Args: []byte(args), Attempt: 1, MaxAttempts: 25,
	}
}
