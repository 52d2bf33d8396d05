package auth_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/connectshop/connectshop/internal/auth"
)

func TestNewKey(t *testing.T) {
	t.Parallel()
	a, b := newKey(t), newKey(t)
	if len(a) != 32 {
		t.Errorf("got %d bytes, want 32", len(a))
	}
	if bytes.Equal(a, b) {
		t.Error("got the same key twice, want random keys")
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "secrets", "shop")
	path := filepath.Join(dir, "service.key")
	k, err := auth.LoadOrCreateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k) != 32 {
		t.Errorf("got a %d-byte key, want 32", len(k))
	}
	for _, c := range []struct {
		path string
		want fs.FileMode
	}{{path, 0o600}, {dir, 0o700}, {filepath.Dir(dir), 0o700}} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("%s: got mode %v, want %v", c.path, got, c.want)
		}
	}
	again, err := auth.LoadOrCreateKeyFile(path)
	if err != nil || !bytes.Equal(again, k) {
		t.Errorf("second call: got a different key (err %v), want the first", err)
	}
	read, err := auth.ReadKeyFile(path)
	if err != nil || !bytes.Equal(read, k) {
		t.Errorf("ReadKeyFile: got a different key (err %v), want the created one", err)
	}
	assertOnlyFile(t, dir, "service.key")
}

func TestLoadOrCreateKeyFileConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "new", "service.key")
	keys := make([]auth.Key, 10)
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = auth.LoadOrCreateKeyFile(path) })
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Errorf("call %d got a different key from call 0, want one key for all", i)
		}
	}
	assertOnlyFile(t, filepath.Join(dir, "new"), "service.key")
}

// assertOnlyFile fails unless dir holds only name: no temporary file is left.
func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("got files %q in %s, want only %s", names, dir, name)
	}
}

func TestReadKeyFile(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	b64 := base64.StdEncoding.EncodeToString(key)
	b64x2 := base64.StdEncoding.EncodeToString(bytes.Repeat(key, 2))
	tests := []struct {
		name    string
		content string
		want    auth.Key
	}{
		{"plain", b64, key},
		{"newline", b64 + "\n", key},
		{"whitespace around", " \t\n" + b64 + "\r\n\n", key},
		{"64 bytes", base64.StdEncoding.EncodeToString(bytes.Repeat(key, 2)), bytes.Repeat(key, 2)},
		// As base64(1) writes it: lines of 76 characters.
		{"64 bytes, wrapped", b64x2[:76] + "\n" + b64x2[76:] + "\n", bytes.Repeat(key, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := auth.ReadKeyFile(path)
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Errorf("got %x (err %v), want %x", []byte(got), err, []byte(tt.want))
			}
		})
	}
}

func TestReadKeyFileRejects(t *testing.T) {
	t.Parallel()
	secret := "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0" // base64 of 27 bytes
	tests := []struct {
		name    string
		content *string // nil: no file
		missing bool    // want fs.ErrNotExist
	}{
		{"missing", nil, true},
		{"empty", ptr(""), false},
		{"short", ptr(secret), false},
		{"31 bytes", ptr(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 31))), false},
		{"bad base64", ptr(secret + "!!"), false},
		{"base64url", ptr(strings.Repeat("-_", 22)), false},
		{"space inside", ptr(secret[:20] + " " + secret[20:] + "AAAAAAAA"), false},
		{"huge", ptr(strings.Repeat(secret, 200)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "key")
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			k, err := auth.ReadKeyFile(path)
			if err == nil {
				t.Fatalf("got a %d-byte key, want an error", len(k))
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tt.missing {
				t.Errorf("got errors.Is(%v, fs.ErrNotExist) %v, want %v", err, got, tt.missing)
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("got %q, want it to name %s", msg, path)
			}
			if tt.content != nil && *tt.content != "" {
				if strings.Contains(msg, *tt.content) || strings.Contains(msg, secret[:8]) {
					t.Errorf("got %q, want no key material", msg)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestWriteKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	key := newKey(t)
	if err := auth.WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("got %v (err %v), want mode 0600", fi.Mode().Perm(), err)
	}
	// An existing file is never replaced.
	err := auth.WriteKeyFile(path, newKey(t))
	if !errors.Is(err, fs.ErrExist) {
		t.Errorf("second write: got %v, want fs.ErrExist", err)
	}
	if got, err := auth.ReadKeyFile(path); err != nil || !bytes.Equal(got, key) {
		t.Errorf("got another key (err %v), want the first one kept", err)
	}
	// A short key is not written.
	short := filepath.Join(dir, "short")
	if err := auth.WriteKeyFile(short, key[:16]); err == nil {
		t.Error("short key: got no error, want one")
	}
	if _, err := os.Stat(short); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("short key: got %v, want no file", err)
	}
	assertOnlyFile(t, dir, "key")
}

// A Key never shows its bytes, however it is printed, logged or marshaled.
func TestKeyRedacted(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	type config struct {
		Name string
		Key  auth.Key
	}
	var logged bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logged, nil))
	logger.Info("loaded", "key", key, "config", config{"payments", key})
	var jsonLogged bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonLogged, nil)).Info("loaded", "key", key)
	marshaled, err := json.Marshal(config{"payments", key})
	if err != nil {
		t.Fatal(err)
	}

	outputs := map[string]string{
		"String":     key.String(),
		"%v":         fmt.Sprintf("%v", key),
		"%+v":        fmt.Sprintf("%+v", key),
		"%s":         fmt.Sprintf("%s", key),
		"%#v":        fmt.Sprintf("%#v", key),
		"%x":         fmt.Sprintf("%x", key),
		"%X":         fmt.Sprintf("%X", key),
		"%d":         fmt.Sprintf("%d", key),
		"%q":         fmt.Sprintf("%q", key),
		"Sprint":     fmt.Sprint(key),
		"Errorf %v":  fmt.Errorf("with %v", key).Error(),
		"%v struct":  fmt.Sprintf("%v", config{"payments", key}),
		"%#v struct": fmt.Sprintf("%#v", config{"payments", key}),
		"slog text":  logged.String(),
		"slog json":  jsonLogged.String(),
		"json":       string(marshaled),
	}
	secrets := []string{
		string(key),
		base64.StdEncoding.EncodeToString(key)[:12],
		base64.RawURLEncoding.EncodeToString(key)[:12],
		hex.EncodeToString(key)[:12],
		strings.ToUpper(hex.EncodeToString(key)[:12]),
		fmt.Sprint([]byte(key))[:12],
	}
	for name, out := range outputs {
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s: got %q, want [redacted] in it", name, out)
		}
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s: got %q, want no key bytes (found %q)", name, out, s)
			}
		}
	}
	if got := fmt.Sprintf("%v|%s|%#v|%x", key, key, key, key); got != "[redacted]|[redacted]|[redacted]|[redacted]" {
		t.Errorf("got %q, want [redacted] for each verb", got)
	}
}
