package pgtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

type templateSlot struct {
	done chan struct{} // closed once name or err is set
	name string
	err  error
}

// Template returns the name of a template database prepared once per (cluster, key) per
// process by prepare(ctx, dsn-as-braid); concurrent callers wait for the first; a prepare error
// fails every caller. The template must have no open connections after prepare returns
// (prepare must close its pools); afterwards it accepts no connections at all, so that
// NewDB can always copy it.
func (c *Cluster) Template(t testing.TB, key string, prepare func(ctx context.Context, dsn string) error) string {
	t.Helper()
	c.tmplMu.Lock()
	if c.templates == nil {
		c.templates = make(map[string]*templateSlot)
	}
	slot, found := c.templates[key]
	if !found {
		slot = &templateSlot{done: make(chan struct{})}
		c.templates[key] = slot
	}
	c.tmplMu.Unlock()

	if !found {
		c.fillTemplate(t.Context(), slot, key, prepare)
	}
	<-slot.done
	if slot.err != nil {
		t.Fatalf("pgtest: template %q on port %d: %v", key, c.Port, slot.err)
	}
	return slot.name
}

// fillTemplate runs prepare for the slot and releases the waiters however prepare ends: a
// panic or a t.FailNow inside it must fail the other callers, not hang them.
func (c *Cluster) fillTemplate(ctx context.Context, slot *templateSlot, key string, prepare func(context.Context, string) error) {
	returned := false
	defer func() {
		if !returned {
			slot.err = errors.New("prepare did not return (it panicked or called t.FailNow in the test that ran it)")
		}
		close(slot.done)
	}()
	slot.name, slot.err = c.buildTemplate(ctx, key, prepare)
	returned = true
}

func (c *Cluster) buildTemplate(ctx context.Context, key string, prepare func(context.Context, string) error) (string, error) {
	name := uniqueName("tpl", key)
	create := fmt.Sprintf("CREATE DATABASE %s TEMPLATE template0 OWNER %s", ident(name), serverRole)
	if err := c.adminExec(ctx, create); err != nil {
		return "", err
	}
	if err := prepare(ctx, c.DSN(name)); err != nil {
		return "", fmt.Errorf("prepare %s: %w", name, err)
	}

	conn, err := pgx.Connect(ctx, c.AdminDSN("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to port %d: %w", c.Port, err)
	}
	defer conn.Close(context.Background())
	// A closed client's backend exits a moment after the close; a pool still open never does.
	// CREATE DATABASE ... TEMPLATE refuses a source with sessions, so wait, then insist.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var open int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name).Scan(&open); err != nil {
			return "", fmt.Errorf("count sessions on %s: %w", name, err)
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("prepare returned with %d session(s) still open on %s; close every pool and connection before returning", open, name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	seal := fmt.Sprintf("ALTER DATABASE %s WITH IS_TEMPLATE true ALLOW_CONNECTIONS false", ident(name))
	if _, err := conn.Exec(ctx, seal); err != nil {
		return "", fmt.Errorf("%s: %w", seal, err)
	}
	return name, nil
}

// NewDB creates a fresh database for this test (CREATE DATABASE … TEMPLATE template OWNER
// braid; template "" means template0, an empty database), returns its braid DSN, and drops it
// in t.Cleanup (WITH (FORCE), so connections the test left open do not block it).
func (c *Cluster) NewDB(t testing.TB, template string) string {
	t.Helper()
	name := uniqueName("t", t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	create := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s OWNER %s", ident(name), ident(cmp.Or(template, "template0")), serverRole)
	if err := c.adminExec(ctx, create); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if !c.running() {
			return // a private cluster the test crashed; its folder goes with it
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := c.adminExec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", ident(name))); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return c.DSN(name)
}

// maxIdentLen is PostgreSQL's NAMEDATALEN-1; longer names are truncated by the server, which
// could make two of ours collide.
const maxIdentLen = 63

// uniqueName returns prefix_N_label, N unique in the process, label reduced to [a-z0-9_] and
// the whole cut to maxIdentLen bytes: a valid unquoted identifier.
func uniqueName(prefix, label string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s_%d_", prefix, proc.seq.Add(1))
	for _, r := range strings.ToLower(label) {
		if b.Len() >= maxIdentLen {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return strings.TrimRight(b.String(), "_")
}

func ident(name string) string { return pgx.Identifier{name}.Sanitize() }
