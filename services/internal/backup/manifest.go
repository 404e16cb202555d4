package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/touchstream/touchstream/events"
)

// Format is the version of the backup directory's layout and manifest. Restore
// refuses any other.
const Format = 1

// ManifestFile is the manifest's name in a backup directory. It is written last: a
// directory without it is an unfinished backup.
const ManifestFile = "manifest.json"

// Manifest describes a backup: what it holds, in which order it was taken, and the
// size and sha256 of every file.
type Manifest struct {
	Format      int       `json:"format"`
	Version     string    `json:"touchstream_version"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at"`
	// Layout is the log's layout (deploy/streams.json at backup time).
	Layout events.Layout `json:"layout"`
	// Steps in the order they were taken (see the package documentation).
	Steps []Step `json:"steps"`
	// Streams are the log streams then SIGNALS, in the order snapshotted.
	Streams []StreamBackup `json:"streams"`
	// Schemas are the PostgreSQL schemas backed up (present ones) or declared and
	// absent (Absent true, no file).
	Schemas []SchemaBackup `json:"schemas"`
	// KEK is the fingerprint of the master key the key store's data keys are wrapped
	// under: restore checks the master key it is given against it before anything.
	KEK string `json:"kek_id,omitempty"`
	// Deploy are the configuration files of the deploy directory, under deploy/.
	Deploy []string `json:"deploy"`
	// Files is every file of the backup but the manifest, with its size and sha256.
	Files []File `json:"files"`
}

// Step is one step of a backup, timed.
type Step struct {
	Name       string    `json:"name"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// StreamBackup is one stream's snapshot.
type StreamBackup struct {
	Name string `json:"name"`
	File string `json:"file"`
	// Log is true for the streams of the log (the layout's), false for SIGNALS.
	Log bool `json:"log"`
	// Consumers: the snapshot holds the stream's consumers (SIGNALS' durable
	// notifier consumers) and their positions.
	Consumers bool `json:"consumers"`
	// Messages, FirstSeq and LastSeq are the stream's state at the snapshot point.
	Messages uint64 `json:"messages"`
	Bytes    uint64 `json:"bytes"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	// Config and State are the server's own, given back to it on restore.
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
}

// SchemaBackup is one PostgreSQL schema's dump.
type SchemaBackup struct {
	Name string `json:"name"`
	// Phase is "before_log" (dumped before the stream snapshots) or "after_log".
	Phase  string `json:"phase"`
	File   string `json:"file,omitempty"`
	Absent bool   `json:"absent,omitempty"`
	// Tables and the rows each held in the dump's snapshot.
	Tables map[string]int64 `json:"tables,omitempty"`
}

// File is one file of a backup.
type File struct {
	Path   string `json:"path"` // relative to the backup directory, slash-separated
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Version is this binary's version: its module version, or its VCS revision.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		return v + " " + rev + dirty
	}
	return v
}

// hashedFile writes a file of the backup and records its size and sha256.
type hashedFile struct {
	f    *os.File
	h    hash.Hash
	n    int64
	path string
}

func createFile(dir, rel string) (*hashedFile, error) {
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	return &hashedFile{f: f, h: sha256.New(), path: rel}, nil
}

func (w *hashedFile) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.h.Write(b[:n])
	w.n += int64(n)
	return n, err
}

// close syncs and closes the file and returns its record.
func (w *hashedFile) close() (File, error) {
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return File{Path: w.path, Size: w.n, SHA256: hex.EncodeToString(w.h.Sum(nil))}, err
}

// hashFile records a file written by another program (pg_dump).
func hashFile(dir, rel string) (File, error) {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return File{}, err
	}
	return File{Path: rel, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// writeManifest writes the manifest, synced, through a temporary name: it appears
// whole or not at all.
func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, ManifestFile))
}

// ErrCorrupt: a backup's manifest or files are not what the manifest says.
var ErrCorrupt = errors.New("backup does not match its manifest")

// Check reads the manifest of the backup in dir and checks it: its format, that it
// names every file the backup needs, and the size and sha256 of every file. It reads
// every byte of the backup and changes nothing.
func Check(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s (not a backup, or an unfinished one)", ErrCorrupt, dir, ManifestFile)
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, ManifestFile, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%w: format %d, this touchstream reads format %d", ErrCorrupt, m.Format, Format)
	}
	if m.CompletedAt.IsZero() {
		return nil, fmt.Errorf("%w: completed_at: missing (an unfinished backup)", ErrCorrupt)
	}
	if err := m.Layout.Validate(); err != nil {
		return nil, fmt.Errorf("%w: layout: %w", ErrCorrupt, err)
	}
	files := map[string]File{}
	for i, f := range m.Files {
		if f.Path == "" || strings.Contains(f.Path, "..") || filepath.IsAbs(f.Path) || strings.HasPrefix(f.Path, "/") {
			return nil, fmt.Errorf("%w: files[%d].path %q: must be relative, inside the backup", ErrCorrupt, i, f.Path)
		}
		files[f.Path] = f
	}
	var needed []string
	logStreams := 0
	for i, s := range m.Streams {
		if len(s.Config) == 0 || len(s.State) == 0 {
			return nil, fmt.Errorf("%w: streams[%d] (%s): config and state are required", ErrCorrupt, i, s.Name)
		}
		if s.Log {
			logStreams++
		}
		needed = append(needed, s.File)
	}
	if logStreams != len(m.Layout.Streams) {
		return nil, fmt.Errorf("%w: streams: %d log streams, the layout has %d", ErrCorrupt, logStreams, len(m.Layout.Streams))
	}
	for _, s := range m.Schemas {
		if !s.Absent {
			needed = append(needed, s.File)
		}
	}
	needed = append(needed, stateBeforeFile, stateAfterFile)
	for _, d := range m.Deploy {
		needed = append(needed, "deploy/"+d)
	}
	for _, n := range needed {
		if _, ok := files[n]; !ok {
			return nil, fmt.Errorf("%w: %s is not listed in files", ErrCorrupt, n)
		}
	}
	for _, f := range m.Files {
		got, err := hashFile(dir, f.Path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, f.Path, err)
		}
		if got.Size != f.Size || got.SHA256 != f.SHA256 {
			return nil, fmt.Errorf("%w: %s: %d bytes sha256 %s, the manifest says %d bytes sha256 %s", ErrCorrupt, f.Path, got.Size, got.SHA256, f.Size, f.SHA256)
		}
	}
	return &m, nil
}

// readJSON reads a JSON file of the backup (already checked).
func readJSON(dir, rel string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	return nil
}

// writeJSONFile writes v as a JSON file of the backup.
func writeJSONFile(dir, rel string, v any) (File, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return File{}, err
	}
	w, err := createFile(dir, rel)
	if err != nil {
		return File{}, err
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		_, _ = w.close()
		return File{}, err
	}
	return w.close()
}
