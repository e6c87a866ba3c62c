package health

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// excluder is implemented by errors that must not be counted by a breaker at
// all, neither as a failure nor as a success. The engine's redirect error
// ("this queue moved to shard N") implements it: a redirect proves the shard is
// healthy, but counting it as a success would let a stream of redirects close a
// half-open breaker on a shard that cannot take real work.
type excluder interface {
	BreakerExcluded() bool
}

// IsInfraError reports whether err means the shard (or the path to it) is
// unhealthy, so that a circuit breaker should count it as a failure.
//
// context.DeadlineExceeded is infrastructure: braid sets its own timeouts
// around shard calls, and a call that ran out of them while the caller still
// waits is a slow or stuck shard. When the deadline was the caller's own, the
// call site excludes the error with IsExcluded before this question is asked.
// context.Canceled is never infrastructure.
//
// A connection attempt that fails for any reason (refused, reset, TLS,
// authentication, too many connections) is infrastructure: the shard cannot
// be used until that changes.
func IsInfraError(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	// A server answer is definite: classify it by SQLSTATE before looking at
	// transport errors it may have been wrapped with.
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return isInfraSQLState(pgErr.Code)
	}
	return isConnectionError(err)
}

// isInfraSQLState reports whether a server error code says the server cannot
// do work right now, as opposed to rejecting this particular statement.
func isInfraSQLState(code string) bool {
	if len(code) == 5 {
		switch code[:2] {
		case "08", // connection exception
			"53", // insufficient resources: too many connections, disk full, out of memory
			"58": // system error: I/O error, undefined file
			return true
		}
	}
	switch code {
	case pgerrcode.AdminShutdown, // 57P01: the server is shutting down or our backend was terminated
		pgerrcode.CrashShutdown,          // 57P02: another backend crashed
		pgerrcode.CannotConnectNow,       // 57P03: starting up, in recovery
		pgerrcode.ReadOnlySQLTransaction: // 25006: a demoted primary or a hot standby
		return true
	}
	return false
}

// isConnectionError reports whether err comes from a broken or unusable
// connection rather than from the server's answer.
func isConnectionError(err error) bool {
	if errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) ||
		errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return true
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	// Any other network-level timeout (an i/o deadline on the socket).
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// IsExcluded reports whether err must not be counted by a breaker at all.
// ctx is the caller's context — not a context braid derived from it to add
// its own timeout: when the caller has given up (ctx done), whatever the call
// returned says nothing about the shard. Canceled calls and errors that
// declare themselves excluded (see the package documentation) are excluded
// whatever ctx says. A nil err is never excluded: it is a success.
func IsExcluded(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	if ctx.Err() != nil {
		return true
	}
	return isExcludedError(err)
}

// isExcludedError is the context-free half of IsExcluded: what the error
// itself says. It is the breaker's IsExcluded hook.
func isExcludedError(err error) bool {
	if err == nil {
		return false
	}
	var ce *callerDoneError
	if errors.As(err, &ce) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return true
	}
	// Walk the whole chain rather than stop at the first excluder, which
	// errors.As would do: a wrapper that says "not excluded" must not hide a
	// redirect beneath it.
	return anyInChain(err, func(e error) bool {
		ex, ok := e.(excluder)
		return ok && ex.BreakerExcluded()
	})
}

// anyInChain reports whether match holds for err or any error it wraps,
// following both Unwrap() error and Unwrap() []error.
func anyInChain(err error, match func(error) bool) bool {
	for err != nil {
		if match(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if anyInChain(e, match) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
