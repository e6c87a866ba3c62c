package membership

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func TestPropertyMetaRoundTrip(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		in := Member{
			NodeID:   rapid.StringMatching(`[A-Za-z0-9_.-]{1,64}`).Draw(t, "node_id"),
			Roles:    rapid.SliceOfDistinct(rapid.SampledFrom(roles), rapid.ID[string]).Draw(t, "roles"),
			State:    rapid.SampledFrom(states).Draw(t, "state"),
			Capacity: rapid.IntRange(1, 1<<20).Draw(t, "capacity"),
			Queues:   rapid.SliceOfNDistinct(rapid.StringMatching(`[A-Za-z0-9_.:-]{1,20}`), 0, 5, rapid.ID[string]).Draw(t, "queues"),
		}
		if len(in.Roles) == 0 {
			in.Roles = nil
		}
		if len(in.Queues) == 0 {
			in.Queues = nil
		}
		var out Member
		require.NoError(t, decodeMeta(&out, encodeMeta(in)))
		require.Equal(t, in, out)
	})
}

func TestDecodeMetaRefusesForeignMeta(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		meta []byte
		want string
	}{
		{"empty", nil, "empty meta"},
		{"another version", []byte{2, '{', '}'}, "meta version 2"},
		{"not JSON", []byte{metaVersion, 'x'}, "meta: invalid character"},
		{"no node id", []byte("\x01{\"s\":\"active\",\"c\":1}"), "empty node id"},
		{"an unknown state", []byte("\x01{\"i\":\"n\",\"s\":\"paused\",\"c\":1}"), `unknown state "paused"`},
		{"no capacity", []byte("\x01{\"i\":\"n\",\"s\":\"active\"}"), "capacity 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Member{Name: "x-1", Addr: "127.0.0.1:1"}
			require.ErrorContains(t, decodeMeta(&m, tt.meta), tt.want)
			require.Equal(t, Member{Name: "x-1", Addr: "127.0.0.1:1"}, m, "a refused meta sets nothing")
		})
	}
}

// FuzzDecodeMeta: remote meta is outside input. Decoding never panics, and
// what it accepts survives a round trip.
func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(Member{NodeID: "a", Roles: []string{RoleWorker}, State: StateActive, Capacity: 3, Queues: []string{"q"}}))
	f.Add([]byte{metaVersion, '{', '}'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Member
		if decodeMeta(&m, b) != nil {
			return
		}
		var again Member
		require.NoError(t, decodeMeta(&again, encodeMeta(m)))
		require.Equal(t, m, again)
	})
}

type recordHandler struct {
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func TestLogWriterMapsLevels(t *testing.T) {
	t.Parallel()
	h := &recordHandler{}
	std := newStdLogger(slog.New(h))
	std.Printf("[DEBUG] memberlist: Stream connection from=%s", "127.0.0.1:1")
	std.Printf("[INFO] memberlist: Suspect %s has failed", "b")
	std.Printf("[WARN] memberlist: Refuting a suspect message")
	std.Printf("[ERR] memberlist: Failed to send gossip")
	std.Printf("no prefix at all")

	type rec struct {
		level slog.Level
		msg   string
	}
	var got []rec
	for _, r := range h.records {
		got = append(got, rec{r.Level, r.Message})
	}
	require.Equal(t, []rec{
		{slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{slog.LevelInfo, "Suspect b has failed"},
		{slog.LevelWarn, "Refuting a suspect message"},
		{slog.LevelError, "Failed to send gossip"},
		{slog.LevelInfo, "no prefix at all"},
	}, got)
}

func TestLogWriterSkipsDisabledLevels(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	std := newStdLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	std.Printf("[DEBUG] memberlist: chatter")
	std.Printf("[WARN] memberlist: worth reading")
	require.NotContains(t, buf.String(), "chatter")
	require.Contains(t, buf.String(), "level=WARN msg=\"worth reading\"")
}
