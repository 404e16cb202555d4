package keystore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"

	"github.com/touchstream/touchstream/services/internal/secrets"
)

// MasterKeySize is the size of the key-encryption key: AES-256.
const MasterKeySize = 32

// dataKeySize is the size of a customer's data key (events.Seal uses AES-256-GCM).
const dataKeySize = 32

// wrappedSize is nonce || sealed data key || tag.
const wrappedSize = 12 + dataKeySize + 16

// MasterKey is the key-encryption key (KEK) that wraps every data key at rest. It
// never leaves the process: formatting it prints only its ID.
type MasterKey struct {
	id   string
	aead cipher.AEAD
}

// newMasterKey builds a master key from its 32 raw bytes.
func newMasterKey(raw []byte) (*MasterKey, error) {
	if len(raw) != MasterKeySize {
		return nil, fmt.Errorf("master key is %d bytes, want %d", len(raw), MasterKeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	// The id is a keyed fingerprint: it tells keys apart without revealing anything
	// about them.
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("touchstream.keystore.kek-id.v1"))
	return &MasterKey{id: hex.EncodeToString(m.Sum(nil)[:8]), aead: aead}, nil
}

// ID is the key's fingerprint, stored as kek_id beside every data key it wraps.
func (k *MasterKey) ID() string { return k.id }

// String names the key by its ID only.
func (k *MasterKey) String() string { return "kek:" + k.id }

// GoString names the key by its ID only, so %#v never prints key material.
func (k *MasterKey) GoString() string { return "keystore.MasterKey{" + k.id + "}" }

// LoadMasterKey reads a master key file: the 32-byte key in standard base64 (surrounding
// white space ignored). The file must not be accessible to other users (mode 0600 or
// 0400; on Kubernetes mount the secret with defaultMode 0400). Errors name the file and
// never include its content.
func LoadMasterKey(path string) (*MasterKey, error) {
	raw, err := secrets.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("master %w (create one with --create-master-key, or point --master-key-file at it)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("master %w", err)
	}
	k, err := newMasterKey(raw)
	clear(raw)
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreateMasterKey loads the master key file, first creating it (mode 0600, its
// directory 0700) with a fresh random key if it does not exist. It reports whether it
// created the key. This is the embedded development default: in production the key is
// provisioned, backed up apart from the database, and loaded with LoadMasterKey, since
// losing it loses every data key.
func LoadOrCreateMasterKey(path string) (key *MasterKey, created bool, err error) {
	raw, created, err := secrets.LoadOrCreate(path)
	if err != nil {
		return nil, false, fmt.Errorf("master %w", err)
	}
	key, err = newMasterKey(raw)
	clear(raw)
	if err != nil {
		return nil, false, fmt.Errorf("master key file %s: %w", path, err)
	}
	return key, created, nil
}

// aad binds a wrapped data key to its key id and customer: a wrapped key copied to
// another row does not unwrap.
func aad(keyID, customer string) []byte {
	return []byte("touchstream.keystore.v1\x00" + keyID + "\x00" + customer)
}

// wrap encrypts a data key: nonce || ciphertext || tag.
func (k *MasterKey) wrap(keyID, customer string, dataKey []byte) []byte {
	out := make([]byte, k.aead.NonceSize(), wrappedSize)
	rand.Read(out)
	return k.aead.Seal(out, out, dataKey, aad(keyID, customer))
}

// unwrap decrypts a wrapped data key. It fails (ErrUnwrap) rather than return anything
// but the key that was wrapped for this key id and customer.
func (k *MasterKey) unwrap(keyID, customer string, wrapped []byte) ([]byte, error) {
	if len(wrapped) != wrappedSize {
		return nil, fmt.Errorf("%w: key %s: wrapped form is %d bytes, want %d", ErrUnwrap, keyID, len(wrapped), wrappedSize)
	}
	n := k.aead.NonceSize()
	dk, err := k.aead.Open(nil, wrapped[:n], wrapped[n:], aad(keyID, customer))
	if err != nil {
		return nil, fmt.Errorf("%w: key %s: authentication failed under kek %s (wrong master key, or the row was altered)", ErrUnwrap, keyID, k.id)
	}
	return dk, nil
}
