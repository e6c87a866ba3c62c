package localpg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// TempDir creates a fresh, empty folder named prefix-PID-* under os.TempDir() for a Group.
// The process id in the name lets RemoveStaleTempDirs tell the folders of dead processes.
func TempDir(prefix string) (string, error) {
	dir, err := os.MkdirTemp(os.TempDir(), fmt.Sprintf("%s-%d-", prefix, os.Getpid()))
	if err != nil {
		return "", fmt.Errorf("localpg: temporary folder: %w", err)
	}
	return dir, nil
}

// RemoveStaleTempDirs removes the folders TempDir made for prefix in processes that no longer
// exist (killed before they could clean up; their servers died with them, see Group). It is for
// callers whose folders are always throwaway, such as tests: a folder kept on purpose must not
// carry a prefix that is cleaned this way.
func RemoveStaleTempDirs(prefix string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"-*-*"))
	for _, dir := range dirs {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(dir), prefix+"-"), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

// serverEnv is the environment of initdb and postgres: ours without libpq's PG* variables and
// locale settings, which could point a server at the wrong folder or translate its log (the
// bind-failure check reads the log).
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C")
}

// chown gives path to the server user when the servers run as another user.
func (g *Group) chown(path string) error {
	if g.owner == nil {
		return nil
	}
	if err := os.Lchown(path, int(g.owner.Uid), int(g.owner.Gid)); err != nil {
		return fmt.Errorf("localpg: chown %s to postgres: %w", path, err)
	}
	return nil
}

// copyTree copies the folder src to dst (which must not exist), keeping permissions and
// giving every entry to the server user.
func (g *Group) copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
			// Mkdir is subject to the umask; the data folder must keep exactly 0700 or 0750.
			if err := os.Chmod(target, info.Mode().Perm()); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case d.Type().IsRegular():
			if err := copyFile(path, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return fmt.Errorf("localpg: copy %s: unexpected file type %v", path, d.Type())
		}
		return g.chown(target)
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

// logTail returns the end of the log at path from byte offset on, for error messages.
func logTail(path string, offset int64) string {
	const maxTail = 4 << 10
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if offset > 0 && offset <= int64(len(data)) {
		data = data[offset:]
	}
	if len(data) > maxTail {
		data = data[len(data)-maxTail:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Sprintf("(log %s is empty)", path)
	}
	return fmt.Sprintf("--- tail of %s ---\n%s", path, strings.TrimRight(string(data), "\n"))
}
