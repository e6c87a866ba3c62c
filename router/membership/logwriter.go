package membership

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// logWriter turns memberlist's *log.Logger output into slog records: the
// "[DEBUG]", "[INFO]", "[WARN]" and "[ERR]" prefixes become levels, and the
// "memberlist: " tag is dropped (the logger's component says it).
type logWriter struct {
	log *slog.Logger
}

func newStdLogger(l *slog.Logger) *log.Logger { return log.New(logWriter{log: l}, "", 0) }

var levelPrefixes = []struct {
	prefix []byte
	level  slog.Level
}{
	{[]byte("[DEBUG] "), slog.LevelDebug},
	{[]byte("[INFO] "), slog.LevelInfo},
	{[]byte("[WARN] "), slog.LevelWarn},
	{[]byte("[ERR] "), slog.LevelError},
	{[]byte("[ERROR] "), slog.LevelError},
}

func (w logWriter) Write(p []byte) (int, error) {
	msg, level := bytes.TrimRight(p, "\n"), slog.LevelInfo
	for _, lp := range levelPrefixes {
		if rest, ok := bytes.CutPrefix(msg, lp.prefix); ok {
			msg, level = rest, lp.level
			break
		}
	}
	if !w.log.Enabled(context.Background(), level) {
		return len(p), nil
	}
	msg = bytes.TrimPrefix(msg, []byte("memberlist: "))
	w.log.Log(context.Background(), level, string(msg))
	return len(p), nil
}
