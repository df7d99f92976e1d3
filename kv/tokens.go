package kv

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MinTokenBytes is the shortest bearer token a token file may hold.
const MinTokenBytes = 16

// TokenCheckInterval is how often, at most, a TokenFile looks at its
// file's modification time to reload it.
const TokenCheckInterval = time.Second

// TokenFile is a set of bearer tokens read from a file, reloaded when the
// file changes. The file has one token a line, optionally named
// ("name:token"); blank lines and lines starting with # are ignored.
type TokenFile struct {
	path string
	log  *slog.Logger

	tokens atomic.Pointer[[]namedToken]

	mu      sync.Mutex // guards the fields below: one reload at a time
	checked time.Time  // when the file was last looked at
	mtime   time.Time  // the modification time and size of the file loaded
	size    int64
}

// namedToken is a token of the file: its name and its SHA-256 digest.
type namedToken struct {
	name   string
	digest [sha256.Size]byte
}

// LoadTokenFile reads the token file at path; logger (nil for
// slog.Default()) gets reloads and their failures.
func LoadTokenFile(path string, logger *slog.Logger) (*TokenFile, error) {
	if logger == nil {
		logger = slog.Default()
	}
	f := &TokenFile{path: path, log: logger}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path returns the file's path.
func (f *TokenFile) Path() string { return f.path }

// Len returns the number of tokens loaded.
func (f *TokenFile) Len() int { return len(*f.tokens.Load()) }

// Reload rereads the file now. On error the tokens loaded before stay in
// force.
func (f *TokenFile) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checked = time.Now()
	return f.reloadLocked()
}

func (f *TokenFile) reloadLocked() error {
	fi, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	tokens, err := parseTokens(f.path, data)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		f.log.Warn("kv http: the token file is readable by others than its owner; chmod 600 it", "file", f.path, "mode", fi.Mode().Perm())
	}
	if len(tokens) == 0 {
		f.log.Warn("kv http: the token file holds no token: no request is accepted with a token", "file", f.path)
	}
	if f.tokens.Load() != nil {
		f.log.Info("kv http: token file reloaded", "file", f.path, "tokens", len(tokens))
	}
	f.tokens.Store(&tokens)
	f.mtime, f.size = fi.ModTime(), fi.Size()
	return nil
}

// parseTokens parses the contents of the token file path.
func parseTokens(path string, data []byte) ([]namedToken, error) {
	var tokens []namedToken
	names := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, tok, named := strings.Cut(line, ":")
		if !named {
			name, tok = fmt.Sprintf("line %d", n), line
		}
		name, tok = strings.TrimSpace(name), strings.TrimSpace(tok)
		switch {
		case named && name == "":
			return nil, fmt.Errorf("token file %s, line %d: empty name before \":\" (want name:token, or the token alone)", path, n)
		case len(tok) < MinTokenBytes:
			return nil, fmt.Errorf("token file %s, line %d: token of %d bytes, under the minimum of %d: use a random token (32 random bytes in hex, as \"openssl rand -hex 32\" makes)", path, n, len(tok), MinTokenBytes)
		case strings.ContainsAny(tok, " \t"):
			return nil, fmt.Errorf("token file %s, line %d: the token contains a space (want name:token, or the token alone)", path, n)
		}
		if prev, dup := names[name]; dup {
			return nil, fmt.Errorf("token file %s, line %d: name %q already used on line %d", path, n, name, prev)
		}
		names[name] = n
		tokens = append(tokens, namedToken{name: name, digest: sha256.Sum256([]byte(tok))})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("token file %s: %w", path, err)
	}
	return tokens, nil
}

// Check reports whether token is one of the file's, and its name. It
// compares in constant time (every token is compared, by digest, so that
// neither the length nor the content of a token leaks through timing).
// At most every TokenCheckInterval, it first reloads the file if the
// file's modification time or size changed.
func (f *TokenFile) Check(token string) (name string, ok bool) {
	f.maybeReload()
	d := sha256.Sum256([]byte(token))
	match := -1
	tokens := *f.tokens.Load()
	for i := range tokens {
		if subtle.ConstantTimeCompare(d[:], tokens[i].digest[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", false
	}
	return tokens[match].name, true
}

// maybeReload reloads the file if it changed, looking at most every
// TokenCheckInterval.
func (f *TokenFile) maybeReload() {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if now.Sub(f.checked) < TokenCheckInterval {
		return
	}
	f.checked = now
	fi, err := os.Stat(f.path)
	if err != nil {
		f.log.Error("kv http: cannot look at the token file; the tokens loaded before stay in force", "file", f.path, "err", err)
		return
	}
	if fi.ModTime().Equal(f.mtime) && fi.Size() == f.size {
		return
	}
	// A file that fails to load is not tried again until it changes.
	f.mtime, f.size = fi.ModTime(), fi.Size()
	if err := f.reloadLocked(); err != nil {
		f.log.Error("kv http: cannot reload the token file; the tokens loaded before stay in force", "err", err)
	}
}
