package main

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

// secretEnv is the environment variable -secret defaults to. The
// environment keeps the secret out of the process list (ps shows flags).
const secretEnv = "SESSIONMESH_SECRET"

// secretSizes are the sizes of a cluster secret both keyrings accept; 32
// bytes (tcp.SecretKeySize) is the one to generate.
var secretSizes = []int{16, 24, tcp.SecretKeySize}

// parseSecrets parses a list of cluster secrets separated by commas or
// white space (so a file may hold one per line), the primary first. Each
// is 32 bytes (or 16 or 24) written in hex (64 digits) or base64 (standard
// or URL alphabet, with or without padding). Lines starting with # are
// comments.
func parseSecrets(s string) ([][]byte, error) {
	var keys [][]byte
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, field := range strings.FieldsFunc(line, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' }) {
			k, err := parseSecret(field)
			if err != nil {
				return nil, fmt.Errorf("secret %d: %w", len(keys)+1, err)
			}
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no secret")
	}
	return keys, nil
}

// parseSecret decodes one secret. Errors never quote the input: it may be
// a real secret with a typo.
func parseSecret(s string) ([]byte, error) {
	for _, size := range secretSizes {
		if len(s) == hex.EncodedLen(size) {
			if b, err := hex.DecodeString(s); err == nil {
				return b, nil
			}
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && slices.Contains(secretSizes, len(b)) {
			return b, nil
		}
	}
	return nil, fmt.Errorf("want %d random bytes (or 16 or 24) in hex (%d digits) or base64, got %d characters that are neither",
		tcp.SecretKeySize, hex.EncodedLen(tcp.SecretKeySize), len(s))
}

// loadSecrets returns the cluster secrets configured by -secret-file,
// -secret or SESSIONMESH_SECRET, in that order of precedence; nil means
// none (clear-text cluster traffic).
func loadSecrets(o options) ([][]byte, error) {
	switch {
	case o.secretFile != "":
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return nil, fmt.Errorf("-secret-file: %w", err)
		}
		keys, err := parseSecrets(string(b))
		if err != nil {
			return nil, fmt.Errorf("-secret-file %s: %w", o.secretFile, err)
		}
		return keys, nil
	case o.secret != "":
		keys, err := parseSecrets(o.secret)
		if err != nil {
			return nil, fmt.Errorf("-secret: %w", err)
		}
		return keys, nil
	case os.Getenv(secretEnv) != "":
		keys, err := parseSecrets(os.Getenv(secretEnv))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", secretEnv, err)
		}
		return keys, nil
	}
	return nil, nil
}

// keyring is what rotates a key: the cluster's gossip keyring and the
// replication transport's.
type keyring interface {
	InstallKey(key []byte) error
	UseKey(key []byte) error
	RemoveKey(key []byte) error
	Keys() [][]byte
}

// setKeys makes the installed keys of every keyring exactly keys, keys[0]
// being the primary: it installs the new ones, switches the primary, then
// removes the others. Applied to every node in turn, three edits of the
// secret file rotate a key without downtime: "old,new", then "new,old",
// then "new".
func setKeys(keys [][]byte, rings ...keyring) error {
	var errs []error
	for _, r := range rings {
		for _, k := range keys {
			errs = append(errs, r.InstallKey(k))
		}
		errs = append(errs, r.UseKey(keys[0]))
	}
	for _, r := range rings {
	installed:
		for _, k := range r.Keys() {
			for _, want := range keys {
				if subtle.ConstantTimeCompare(k, want) == 1 {
					continue installed
				}
			}
			errs = append(errs, r.RemoveKey(k))
		}
	}
	return errors.Join(errs...)
}

// reloadSecretsOnHUP re-reads the secret file on every SIGHUP and applies
// it to the node's keyrings, until done is closed.
func (n *node) reloadSecretsOnHUP(o options, log *slog.Logger, done <-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-done:
			return
		case <-hup:
		}
		keys, err := loadSecrets(o)
		if err == nil {
			err = setKeys(keys, n.cluster, n.transport)
		}
		if err == nil { // the next snapshot is sealed with the new primary
			err = n.store.UseSnapshotKey(keys[0])
		}
		if err != nil {
			log.Error("reload secrets", "err", err)
			continue
		}
		log.Info("reloaded secrets", "keys", len(keys))
	}
}
