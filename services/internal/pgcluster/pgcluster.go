// Package pgcluster runs a private PostgreSQL cluster made with initdb: for the
// benchmarks (a cluster sized for the data, apart from the machine's shared one) and
// for fault tests that restart or kill PostgreSQL without touching anyone else's.
//
// initdb and the server refuse to run as root; when this process is root, they run as
// the postgres user (runuser) in a directory that user owns.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a private PostgreSQL cluster.
type Cluster struct {
	Dir      string // data directory
	Port     int
	Settings map[string]string // postgresql.conf settings given at start
	bin      string
	owner    *user.User // who runs the server; nil: this process's user
}

// Tuned are settings for a write-heavy read-model workload on this kind of machine:
// buffers large enough to hold the hot part of the read models, checkpoints spread
// out, WAL compressed. Durability is unchanged (fsync and synchronous_commit on).
func Tuned(sharedBuffers string) map[string]string {
	return map[string]string{
		"shared_buffers":               sharedBuffers,
		"max_wal_size":                 "16GB",
		"min_wal_size":                 "1GB",
		"checkpoint_timeout":           "30min",
		"checkpoint_completion_target": "0.9",
		"wal_compression":              "on",
		"wal_buffers":                  "64MB",
		"effective_cache_size":         "12GB",
		"max_connections":              "200",
		"synchronous_commit":           "on",
		"fsync":                        "on",
	}
}

// BinDir finds the server binaries (pg_config --bindir, or the newest
// /usr/lib/postgresql/*/bin).
func BinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("pgcluster: no PostgreSQL server binaries (initdb) found; install the postgresql package")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Create makes a new cluster in dir (which must not exist or be empty), owned by the
// postgres user when this process is root.
func Create(ctx context.Context, dir string, port int, settings map[string]string) (*Cluster, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, Port: port, Settings: settings, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgcluster: running as root needs the postgres user: %w", err)
		}
		c.owner = u
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	if err := c.chown(dir); err != nil {
		return nil, err
	}
	out, err := c.command(ctx, "initdb", "-D", dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("pgcluster: initdb: %w\n%s", err, out)
	}
	return c, nil
}

// chown gives dir (and its parents up to an existing directory the owner can enter)
// to the cluster's owner.
func (c *Cluster) chown(dir string) error {
	if c.owner == nil {
		return nil
	}
	uid, _ := strconv.Atoi(c.owner.Uid)
	gid, _ := strconv.Atoi(c.owner.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("pgcluster: chown %s: %w", dir, err)
	}
	// The server must be able to reach its directory: open up the parents for traversal.
	for p := filepath.Dir(dir); p != "/" && p != "."; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			break
		}
		if st.Mode().Perm()&0o001 == 0 {
			_ = os.Chmod(p, st.Mode().Perm()|0o001)
		}
	}
	return nil
}

func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, name)
	if c.owner != nil {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", c.owner.Username, "--", path}, args...)...)
	}
	return exec.CommandContext(ctx, path, args...)
}

// URL is the cluster's connection URL for a database.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, database)
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start(ctx context.Context) error {
	opts := []string{"-p", strconv.Itoa(c.Port), "-k", c.Dir, "-c", "listen_addresses=127.0.0.1"}
	keys := make([]string, 0, len(c.Settings))
	for k := range c.Settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		opts = append(opts, "-c", k+"="+c.Settings[k])
	}
	out, err := c.command(ctx, "pg_ctl", "-D", c.Dir, "-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60",
		"-o", strings.Join(opts, " "), "start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(c.Dir, "server.log"))
		return fmt.Errorf("pgcluster: start: %w\n%s\n%s", err, out, tail(log, 2000))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgcluster: not accepting connections after 30s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop shuts the server down (fast mode: in-flight transactions are rolled back).
func (c *Cluster) Stop(ctx context.Context) error {
	out, err := c.command(ctx, "pg_ctl", "-D", c.Dir, "-m", "fast", "-w", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgcluster: stop: %w\n%s", err, out)
	}
	return nil
}

// Kill sends SIGKILL to the postmaster: a crash. Start recovers from the WAL.
func (c *Cluster) Kill() error {
	b, err := os.ReadFile(filepath.Join(c.Dir, "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("pgcluster: kill: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		return fmt.Errorf("pgcluster: kill: postmaster.pid: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("pgcluster: kill %d: %w", pid, err)
	}
	// The backends exit once they notice the postmaster is gone.
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Remove stops the server if it runs and deletes the data directory.
func (c *Cluster) Remove(ctx context.Context) error {
	_ = c.Stop(ctx)
	return os.RemoveAll(c.Dir)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
