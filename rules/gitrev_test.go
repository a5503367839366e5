package rules

import (
	"os"
	"path/filepath"
	"testing"
)

func TestGitRevisionReadsTheCheckedOutCommit(t *testing.T) {
	const rev = "0123456789abcdef0123456789abcdef01234567"
	write := func(path, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		setup func(root string)
		want  string
	}{
		{"a branch ref file", func(root string) {
			write(filepath.Join(root, ".git/HEAD"), "ref: refs/heads/main\n")
			write(filepath.Join(root, ".git/refs/heads/main"), rev+"\n")
		}, rev},
		{"a packed ref", func(root string) {
			write(filepath.Join(root, ".git/HEAD"), "ref: refs/heads/main\n")
			write(filepath.Join(root, ".git/packed-refs"), "# pack-refs with: peeled\n"+rev+" refs/heads/main\n")
		}, rev},
		{"a detached HEAD", func(root string) { write(filepath.Join(root, ".git/HEAD"), rev+"\n") }, rev},
		{"no work tree", func(string) {}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			c.setup(root)
			dir := filepath.Join(root, "configs", "rules")
			os.MkdirAll(dir, 0o755)
			if got := gitRevision(dir); got != c.want {
				t.Errorf("gitRevision = %q, want %q", got, c.want)
			}
		})
	}
}
