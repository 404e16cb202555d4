package keystore_test

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/touchstream/touchstream/services/internal/keystore"
)

func TestLoadMasterKey(t *testing.T) {
	raw := make([]byte, 32)
	rand.Read(raw)
	good := base64.StdEncoding.EncodeToString(raw)
	tests := []struct {
		name    string
		content string // "" with mode 0: no file
		mode    os.FileMode
		dir     bool
		wantErr string // substring; "" means success
		wantIs  error
	}{
		{name: "valid", content: good + "\n", mode: 0o600},
		{name: "read only, group readable", content: good, mode: 0o440},
		{name: "unpadded base64 and spaces", content: "  " + strings.TrimRight(good, "=") + " \n", mode: 0o400},
		{name: "missing", wantErr: "create one with --create-master-key", wantIs: fs.ErrNotExist},
		{name: "world readable", content: good, mode: 0o644, wantErr: "mode 0644 lets other users access it"},
		{name: "world writable", content: good, mode: 0o602, wantErr: "lets other users access it"},
		{name: "too short", content: base64.StdEncoding.EncodeToString(raw[:16]), mode: 0o600, wantErr: "decodes to 16 bytes, want 32"},
		{name: "too long", content: base64.StdEncoding.EncodeToString(append(raw, raw...)), mode: 0o600, wantErr: "decodes to 64 bytes, want 32"},
		{name: "not base64", content: "this is not a key!", mode: 0o600, wantErr: "not base64"},
		{name: "empty", content: "\n", mode: 0o600, wantErr: "empty"},
		{name: "directory", dir: true, wantErr: "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			switch {
			case tt.dir:
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			case tt.mode != 0:
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.mode); err != nil { // WriteFile's mode is subject to umask
					t.Fatal(err)
				}
			}
			k, err := keystore.LoadMasterKey(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadMasterKey: %v", err)
				}
				if k.ID() == "" {
					t.Fatal("empty key id")
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadMasterKey: no error, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q: want it to name %s and say %q", err, path, tt.wantErr)
			}
			if c := strings.TrimSpace(tt.content); len(c) > 8 && strings.Contains(err.Error(), c) {
				t.Errorf("error %q contains the file's content", err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v: want errors.Is %v", err, tt.wantIs)
			}
		})
	}
}

func TestLoadOrCreateMasterKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "secrets")
	path := filepath.Join(dir, "master.key")
	k1, created, err := keystore.LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("created = false for a new file")
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("key file mode %04o, want %04o", got, want)
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dst.Mode().Perm(), os.FileMode(0o700); got != want {
		t.Errorf("key directory mode %04o, want %04o", got, want)
	}
	k2, created, err := keystore.LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("created = true for an existing file")
	}
	if diff := cmp.Diff(k1.ID(), k2.ID()); diff != "" {
		t.Errorf("key id changed on reload (-first +second):\n%s", diff)
	}
	k3, err := keystore.LoadMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if k3.ID() != k1.ID() {
		t.Errorf("LoadMasterKey id %s, want %s", k3.ID(), k1.ID())
	}
	if other := newKEK(t); other.ID() == k1.ID() {
		t.Errorf("two random keys share the id %s", k1.ID())
	}
}

func TestMasterKeyNeverPrinted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	k, _, err := keystore.LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(string(text))
	raw, _ := base64.StdEncoding.DecodeString(secret)
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		got := fmt.Sprintf(format, k)
		if strings.Contains(got, secret) || strings.Contains(got, string(raw)) || strings.Contains(got, fmt.Sprintf("%x", raw)) {
			t.Errorf("%s prints key material: %s", format, got)
		}
		if !strings.Contains(got, k.ID()) {
			t.Errorf("%s = %s, want it to name the key id %s", format, got, k.ID())
		}
	}
}
