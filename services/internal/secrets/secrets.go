// Package secrets reads the symmetric keys touchstream's services need (the key
// service's key-encryption key, the secret of the phone search hash) from files
// holding 32 random bytes in standard base64. For the embedded development default it
// can create them (mode 0600, directory 0700); in production they are provisioned, and
// a missing, malformed or other-readable file is an error that names the file and
// never includes its content.
package secrets

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the size of every key: 256 bits.
const KeySize = 32

// Load reads a key file. The file must not be accessible to other users (mode 0600 or
// 0400; on Kubernetes mount the secret with defaultMode 0400).
func Load(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("key file %s: %w", path, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o007 != 0 {
		return nil, fmt.Errorf("key file %s: mode %04o lets other users access it; chmod 600 %s", path, perm, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	defer f.Close()
	// A base64 key is 44 bytes; anything much larger is not a key file.
	text, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	key, err := decode(strings.TrimSpace(string(text)))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

func decode(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty: want a 32-byte key in base64")
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(s); err != nil {
			return nil, errors.New("not base64: want a 32-byte key in base64")
		}
	}
	if len(raw) != KeySize {
		clear(raw)
		return nil, fmt.Errorf("decodes to %d bytes, want %d", len(raw), KeySize)
	}
	return raw, nil
}

// LoadOrCreate reads a key file, first creating it with a fresh random key if it does
// not exist, and reports whether it created it. Two processes racing to create it end
// up with the same key.
func LoadOrCreate(path string) (key []byte, created bool, err error) {
	key, err = Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	switch err = create(path); {
	case err == nil:
		created = true
	case errors.Is(err, fs.ErrExist): // another process created it first: use theirs
	default:
		return nil, false, fmt.Errorf("create key file %s: %w", path, err)
	}
	key, err = Load(path)
	return key, created, err
}

func create(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	raw := make([]byte, KeySize)
	_, _ = rand.Read(raw)
	text := base64.StdEncoding.EncodeToString(raw) + "\n"
	clear(raw)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
	}
	return err
}
