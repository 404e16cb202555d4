package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/touchstream/touchstream/events"
	"github.com/touchstream/touchstream/services/internal/backup"
)

// TestBackupRestoreCommands drives `touchstream backup` and `touchstream restore` as an
// operator would: a backup of a folded log (table output), a dry-run restore into the
// same site refused as not empty, and the usage errors.
func TestBackupRestoreCommands(t *testing.T) {
	c := newCLIEnv(t)
	pub := c.publisher(t, "urn:test:store")
	for i := range 20 {
		e, err := events.NewEvent("C-BAK-"+string(rune('A'+i%5)), time.Now().Add(-time.Hour), events.StoreVisited{StoreID: "S1", Purpose: "inquiry", DurationSeconds: 60})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	c.foldAll(t)
	dir := filepath.Join(t.TempDir(), "backup")
	out, err := c.run(t, "backup", "--to", dir, "--quiet")
	t.Logf("backup:\n%s", out)
	if err != nil || !strings.Contains(out, "TOUCHPOINTS  20 ") || !strings.Contains(out, "ABSENT") || !strings.Contains(out, "channels.json") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, backup.ManifestFile)); err != nil {
		t.Fatal(err)
	}
	out, err = c.run(t, "restore", "--from", dir, "--dry-run", "--quiet")
	t.Logf("restore --dry-run into the same site:\n%s", out)
	if !errors.Is(err, backup.ErrNotEmpty) || !strings.Contains(out, "the target already holds: stream TOUCHPOINTS") {
		t.Fatalf("restore into a non-empty site: %v\n%s", err, out)
	}

	notEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(notEmpty, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want error
	}{
		{[]string{"backup", "--help"}, flag.ErrHelp},
		{[]string{"restore", "--help"}, flag.ErrHelp},
		{[]string{"backup"}, errUsage},
		{[]string{"backup", "--to", notEmpty}, errUsage},
		{[]string{"backup", "--to", dir + "-2", "--schemas-after-log", "Key Store"}, errUsage},
		{[]string{"restore"}, errUsage},
		{[]string{"restore", "--from", filepath.Join(notEmpty, "missing")}, errUsage},
	} {
		if _, err := c.run(t, tc.args...); !errors.Is(err, tc.want) {
			t.Errorf("%v: %v, want %v", tc.args, err, tc.want)
		}
	}
}
