package localpg

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeBinDir makes dir holding executable stand-ins for the named binaries.
func fakeBinDir(t *testing.T, dir string, names ...string) string {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, name := range names {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755))
	}
	return dir
}

func TestFindBinDir(t *testing.T) {
	t.Run("nothing found says how to install PostgreSQL", func(t *testing.T) {
		_, err := findBinDir("", nil)
		require.Error(t, err)
		require.Contains(t, err.Error(), "apt-get install -y postgresql")
		require.Contains(t, err.Error(), "initdb")
	})

	t.Run("the newest major version wins, compared as numbers", func(t *testing.T) {
		root := t.TempDir()
		for _, v := range []string{"9.6", "10", "15"} {
			fakeBinDir(t, filepath.Join(root, v, "bin"), "initdb", "postgres")
		}
		fakeBinDir(t, filepath.Join(root, "17", "bin"), "initdb") // no server binary: not a candidate
		got, err := findBinDir("", []string{filepath.Join(root, "*", "bin")})
		require.NoError(t, err)
		require.Equal(t, filepath.Join(root, "15", "bin"), got)
	})

	t.Run("initdb on PATH wins, followed through symlinks", func(t *testing.T) {
		root := t.TempDir()
		real := fakeBinDir(t, filepath.Join(root, "real"), "initdb", "postgres")
		onPath := filepath.Join(root, "path")
		require.NoError(t, os.Mkdir(onPath, 0o755))
		require.NoError(t, os.Symlink(filepath.Join(real, "initdb"), filepath.Join(onPath, "initdb")))
		fakeBinDir(t, filepath.Join(root, "99", "bin"), "initdb", "postgres")

		got, err := findBinDir(onPath, []string{filepath.Join(root, "*", "bin")})
		require.NoError(t, err)
		require.Equal(t, real, got)
	})

	t.Run("pg_config --bindir comes before the globs", func(t *testing.T) {
		root := t.TempDir()
		bin := fakeBinDir(t, filepath.Join(root, "bin"), "initdb", "postgres")
		tools := filepath.Join(root, "tools")
		require.NoError(t, os.Mkdir(tools, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(tools, "pg_config"), []byte("#!/bin/sh\necho "+bin+"\n"), 0o755))
		fakeBinDir(t, filepath.Join(root, "99", "bin"), "initdb", "postgres")

		got, err := findBinDir(tools, []string{filepath.Join(root, "*", "bin")})
		require.NoError(t, err)
		require.Equal(t, bin, got)
	})
}
