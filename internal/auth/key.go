package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// minKeyLen is the shortest key accepted: HMAC-SHA256 gains nothing from more
// than 32 bytes, and is weakened by fewer.
const minKeyLen = 32

// maxKeyFileLen bounds what ReadKeyFile reads, so a wrong path (a log, a
// device) fails fast instead of being read whole.
const maxKeyFileLen = 4096

// redacted is what a Key prints as, wherever it is printed.
const redacted = "[redacted]"

// Key is a secret HMAC-SHA256 key, at least 32 bytes. It prints, logs and
// marshals as "[redacted]", so it cannot leak through a log line or a dumped
// config by accident.
type Key []byte

// NewKey returns 32 random bytes from crypto/rand.
func NewKey() (Key, error) {
	k := make(Key, minKeyLen)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("new key: %w", err)
	}
	return k, nil
}

// String returns "[redacted]".
func (k Key) String() string { return redacted }

// GoString returns "[redacted]", for %#v.
func (k Key) GoString() string { return redacted }

// Format prints "[redacted]" for every verb: without it %d or %x would print
// the bytes.
func (k Key) Format(f fmt.State, _ rune) { io.WriteString(f, redacted) }

// LogValue returns "[redacted]", for log/slog.
func (k Key) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[redacted]": encoding/json would otherwise write the
// key in base64.
func (k Key) MarshalText() ([]byte, error) { return []byte(redacted), nil }

func (k Key) valid() error {
	if len(k) < minKeyLen {
		return fmt.Errorf("key is %d bytes, want at least %d", len(k), minKeyLen)
	}
	return nil
}

// mustBeValid panics on a short key: every constructor taking a Key is given
// one from NewKey or a key file, which are long enough, so a short one is a bug.
func (k Key) mustBeValid() {
	if err := k.valid(); err != nil {
		panic("auth: " + err.Error())
	}
}

// ReadKeyFile reads a key stored as standard base64 text; whitespace around it
// is ignored, and so are line breaks inside, as base64(1) wraps long keys. Errors name the path but never the content. A missing file gives
// an error that matches fs.ErrNotExist.
func ReadKeyFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err) // *fs.PathError names the path
	}
	defer f.Close()
	text, err := io.ReadAll(io.LimitReader(f, maxKeyFileLen+1))
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	if len(text) > maxKeyFileLen {
		return nil, fmt.Errorf("key file %s: over %d bytes, not a key", path, maxKeyFileLen)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		// The decoder's error gives only an offset; still, say nothing of the content.
		return nil, fmt.Errorf("key file %s: not standard base64", path)
	}
	if err := Key(k).valid(); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile stores k in a new file at path, as base64 text readable by its
// owner only (0600). It fails, with an error matching fs.ErrExist, if the file
// exists. The file appears whole or not at all: k is written to a temporary
// file in the same directory, which is then hard-linked to path (a link, unlike
// a rename, never replaces an existing file).
func WriteKeyFile(path string, k Key) error {
	if err := k.valid(); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("write key: %w", err) // *os.LinkError names both paths
	}
	// Make the new name durable: a key lost in a crash would end every session.
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("write key %s: sync directory: %w", path, err)
		}
	}
	return nil
}

// LoadOrCreateKeyFile reads the key at path or, if there is no file, creates
// its directory (0700) if needed and stores a new key there (see
// WriteKeyFile). Processes racing to create it all end up with the same key:
// those that lose read the winner's.
func LoadOrCreateKeyFile(path string) (Key, error) {
	k, err := ReadKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key: %w", err)
	}
	if k, err = NewKey(); err != nil {
		return nil, err
	}
	switch err := WriteKeyFile(path, k); {
	case err == nil:
		return k, nil
	case errors.Is(err, fs.ErrExist):
		return ReadKeyFile(path)
	default:
		return nil, err
	}
}
