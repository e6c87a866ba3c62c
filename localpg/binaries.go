package localpg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// debianBinGlob is where Debian and Ubuntu's postgresql-NN packages put the server binaries,
// which they keep off PATH.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// installHint ends every "binaries not found" error: the reader needs the fix, not the search.
const installHint = "install the PostgreSQL server: `apt-get install -y postgresql` on Debian/Ubuntu " +
	"(as root; the package also creates the postgres system user), `dnf install postgresql-server` " +
	"on Fedora/RHEL, `brew install postgresql` on macOS; or put the folder holding initdb and " +
	"postgres on PATH"

// findBinDir returns the folder holding the initdb and postgres binaries. It looks for initdb on
// the PATH-style list pathList, then asks the first pg_config on pathList for --bindir, then
// tries the folders matching globs, the highest version number in the path first (so
// /usr/lib/postgresql/17/bin wins over .../9.6/bin). A folder counts only if it holds both
// binaries. The parameters make the search testable; Start uses the process's PATH
// and debianBinGlob.
func findBinDir(pathList string, globs []string) (string, error) {
	// initdb on PATH, followed through symlinks: /usr/local/bin/initdb may be a link into the
	// real bin folder, and the server binaries sit beside the link's target.
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			continue // "." in PATH syntax; a test must not depend on its working folder
		}
		initdb := filepath.Join(dir, "initdb")
		if !isExecutable(initdb) {
			continue
		}
		if real, err := filepath.EvalSymlinks(initdb); err == nil && hasServerBinaries(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if hasServerBinaries(dir) {
			return dir, nil
		}
	}

	if pgConfig := lookIn(pathList, "pg_config"); pgConfig != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
		cancel()
		if dir := strings.TrimSpace(string(out)); err == nil && hasServerBinaries(dir) {
			return dir, nil
		}
	}

	for _, glob := range globs {
		matches, err := filepath.Glob(glob)
		if err != nil {
			return "", fmt.Errorf("localpg: bad binary search pattern %q: %w", glob, err)
		}
		slices.SortStableFunc(matches, func(a, b string) int { return compareVersions(pathVersion(b), pathVersion(a)) })
		for _, dir := range matches {
			if hasServerBinaries(dir) {
				return dir, nil
			}
		}
	}

	searched := []string{"initdb on PATH", "pg_config --bindir"}
	searched = append(searched, globs...)
	return "", fmt.Errorf("localpg: PostgreSQL server binaries (initdb, postgres) not found (searched %s); %s",
		strings.Join(searched, ", "), installHint)
}

func hasServerBinaries(dir string) bool {
	return dir != "" && isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres"))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// lookIn is exec.LookPath over an explicit PATH-style list.
func lookIn(pathList, name string) string {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	return ""
}

// pathVersion returns the version number nearest the end of path, e.g. [9 6] for
// /usr/lib/postgresql/9.6/bin, or nil when no element is a version.
func pathVersion(path string) []int {
	for _, elem := range slices.Backward(strings.Split(filepath.Clean(path), string(filepath.Separator))) {
		if v := parseVersion(elem); v != nil {
			return v
		}
	}
	return nil
}

func parseVersion(s string) []int {
	if s == "" {
		return nil
	}
	var v []int
	for part := range strings.SplitSeq(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return nil
		}
		v = append(v, n)
	}
	return v
}

// compareVersions orders versions numerically, a missing version lowest.
func compareVersions(a, b []int) int {
	if (a == nil) != (b == nil) {
		if a == nil {
			return -1
		}
		return 1
	}
	return slices.Compare(a, b)
}
