package natsauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/nats-io/nkeys"
)

// Seed is one identity's nkey: the seed file the process connects with and the public
// key the server knows it by.
type Seed struct {
	Path   string
	Public string
}

// LoadOrCreateSeeds returns the nkey seed of every named identity, one file per
// identity in dir (<name>.nk), creating the missing ones: the directory mode 0700,
// the files mode 0600, written whole or not at all. An existing file that is not a
// user seed, or readable by others, is an error: it is fixed by hand, never replaced.
func LoadOrCreateSeeds(dir string, names []string) (map[string]Seed, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats seeds: %w", err)
	}
	out := make(map[string]Seed, len(names))
	for _, name := range names {
		path := filepath.Join(dir, name+".nk")
		pub, err := loadSeed(path)
		if errors.Is(err, fs.ErrNotExist) {
			pub, err = createSeed(path)
		}
		if err != nil {
			return nil, fmt.Errorf("nats seeds: %w", err)
		}
		out[name] = Seed{Path: path, Public: pub}
	}
	return out, nil
}

func loadSeed(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s: mode %04o: a seed must be readable by its owner only (chmod 600)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	kp, err := nkeys.ParseDecoratedNKey(b)
	if err != nil {
		return "", fmt.Errorf("%s: not an nkey seed: %w", path, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		return "", fmt.Errorf("%s: not a user nkey seed", path)
	}
	return pub, nil
}

func createSeed(path string) (string, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".seed-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	if _, err := tmp.Write(append(seed, '\n')); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	// Link, not rename: a seed another process created meanwhile is kept.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadSeed(path)
		}
		return "", err
	}
	return pub, nil
}
