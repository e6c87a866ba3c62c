package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// redirectError stands in for the engine's redirect: it carries data and
// declares itself excluded from breaker accounting.
type redirectError struct {
	queue   string
	movedTo int
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("queue %q moved to shard %d", e.queue, e.movedTo)
}
func (e *redirectError) BreakerExcluded() bool { return true }

// notExcludedError implements the excluder interface but says no.
type notExcludedError struct{ err error }

func (e *notExcludedError) Error() string         { return "not excluded: " + e.err.Error() }
func (e *notExcludedError) Unwrap() error         { return e.err }
func (e *notExcludedError) BreakerExcluded() bool { return false }

func pgError(code, message string) error {
	return &pgconn.PgError{Severity: "ERROR", Code: code, Message: message}
}

// refusedConnectError dials a port on 127.0.0.1 that was just closed, the way
// a shard whose server is down answers.
func refusedConnectError(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://braid@127.0.0.1:%d/braid?sslmode=disable", port))
	if conn != nil {
		_ = conn.Close(ctx)
	}
	require.Error(t, err)
	var connectErr *pgconn.ConnectError
	require.ErrorAs(t, err, &connectErr, "want a pgconn.ConnectError, got %T: %v", err, err)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	return err
}

func TestIsInfraError(t *testing.T) {
	t.Parallel()

	alive := context.Background()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	t.Cleanup(cancelExpired)

	tests := []struct {
		name         string
		err          error
		ctx          context.Context // the caller's context
		wantInfra    bool
		wantExcluded bool
	}{
		{
			name:      "a refused connection (dialing a closed port) is infra",
			err:       refusedConnectError(t),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "a reset connection is infra",
			err:       &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET},
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "an unexpected EOF from a broken connection is infra",
			err:       fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "a pgx connection that was already closed is infra",
			err:       fmt.Errorf("shard 2: claim: %w", pgconn.ErrConnClosed),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "the server shutting down (57P01 admin_shutdown) is infra",
			err:       pgError("57P01", "terminating connection due to administrator command"),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "another backend crashing (57P02 crash_shutdown) is infra",
			err:       pgError("57P02", "terminating connection because of crash of another server process"),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "a server starting up or in recovery (57P03 cannot_connect_now) is infra",
			err:       pgError("57P03", "the database system is starting up"),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "too many connections (53300) is infra",
			err:       pgError("53300", "sorry, too many clients already"),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "a full disk (53100) is infra",
			err:       pgError("53100", "could not extend file"),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "a demoted primary refusing writes (25006 read_only_sql_transaction) is infra",
			err:       pgError("25006", "cannot execute INSERT in a read-only transaction"),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "a connection failure reported by the server (08006) is infra",
			err:       pgError("08006", "connection failure"),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "an I/O error on the server (58030) is infra",
			err:       pgError("58030", "could not read block"),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "a statement timeout (57014 query_canceled) is not infra",
			err:       pgError("57014", "canceling statement due to statement timeout"),
			ctx:       alive,
			wantInfra: false,
		},
		{
			name:         "a cancellation by the caller is excluded and not infra",
			err:          fmt.Errorf("enqueue: %w", context.Canceled),
			ctx:          canceled,
			wantInfra:    false,
			wantExcluded: true,
		},
		{
			name:         "context.Canceled is excluded even when the caller's context looks alive",
			err:          context.Canceled,
			ctx:          alive,
			wantInfra:    false,
			wantExcluded: true,
		},
		{
			name:      "a deadline braid set, hit while the caller still waits, is infra",
			err:       fmt.Errorf("shard 1: enqueue: %w", context.DeadlineExceeded),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:         "the caller's own deadline is excluded",
			err:          fmt.Errorf("shard 1: enqueue: %w", context.DeadlineExceeded),
			ctx:          expired,
			wantInfra:    true, // the classifier alone cannot tell; exclusion wins
			wantExcluded: true,
		},
		{
			name:         "an infra error that arrives after the caller gave up is excluded",
			err:          pgError("57P01", "terminating connection due to administrator command"),
			ctx:          canceled,
			wantInfra:    true,
			wantExcluded: true,
		},
		{
			name:      "a serialization failure (40001) is not infra",
			err:       pgError("40001", "could not serialize access due to concurrent update"),
			ctx:       alive,
			wantInfra: false,
		},
		{
			name:      "a deadlock (40P01) is not infra",
			err:       pgError("40P01", "deadlock detected"),
			ctx:       alive,
			wantInfra: false,
		},
		{
			name:      "a unique violation (23505) is not infra",
			err:       pgError("23505", "duplicate key value violates unique constraint"),
			ctx:       alive,
			wantInfra: false,
		},
		{
			name:      "an application error is not infra",
			err:       errors.New("job args: unknown kind \"email\""),
			ctx:       alive,
			wantInfra: false,
		},
		{
			name:         "a redirect (an excluder saying true) is excluded",
			err:          &redirectError{queue: "emails", movedTo: 3},
			ctx:          alive,
			wantInfra:    false,
			wantExcluded: true,
		},
		{
			name:         "a wrapped redirect is excluded",
			err:          fmt.Errorf("shard 1: enqueue: %w", &redirectError{queue: "emails", movedTo: 3}),
			ctx:          alive,
			wantInfra:    false,
			wantExcluded: true,
		},
		{
			name:         "a redirect joined under an excluder saying false is still excluded",
			err:          &notExcludedError{err: errors.Join(errors.New("flush"), &redirectError{queue: "emails", movedTo: 3})},
			ctx:          alive,
			wantInfra:    false,
			wantExcluded: true,
		},
		{
			name:      "an excluder saying false is counted as what it wraps",
			err:       &notExcludedError{err: pgError("53300", "sorry, too many clients already")},
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:      "a wrapped infra error is infra",
			err:       fmt.Errorf("shard 4: claim %q: %w", "emails", pgError("57P01", "terminating connection")),
			ctx:       alive,
			wantInfra: true,
		},
		{
			name:         "nil is neither infra nor excluded",
			err:          nil,
			ctx:          canceled,
			wantInfra:    false,
			wantExcluded: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.wantInfra, IsInfraError(tt.err), "IsInfraError(%v)", tt.err)
			require.Equal(t, tt.wantExcluded, IsExcluded(tt.ctx, tt.err), "IsExcluded(%v)", tt.err)
		})
	}
}
