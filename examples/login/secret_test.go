package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

func TestParseSecrets(t *testing.T) {
	k1 := bytes.Repeat([]byte{0xab}, 32)
	k2 := bytes.Repeat([]byte{0xfe}, 32)
	for _, in := range []string{
		hex.EncodeToString(k1),
		strings.ToUpper(hex.EncodeToString(k1)),
		base64.StdEncoding.EncodeToString(k1),
		base64.RawStdEncoding.EncodeToString(k1),
		base64.URLEncoding.EncodeToString(k1),
		base64.RawURLEncoding.EncodeToString(k1),
		"  " + hex.EncodeToString(k1) + "\n",
	} {
		keys, err := parseSecrets(in)
		require.NoError(t, err, in)
		assert.Equal(t, [][]byte{k1}, keys, in)
	}
	keys, err := parseSecrets(hex.EncodeToString(k2) + "," + base64.StdEncoding.EncodeToString(k1))
	require.NoError(t, err)
	assert.Equal(t, [][]byte{k2, k1}, keys)
	keys, err = parseSecrets("# rotated 2026-01-01\n" + hex.EncodeToString(k1) + "\r\n\n" + hex.EncodeToString(k2) + "\n")
	require.NoError(t, err)
	assert.Equal(t, [][]byte{k1, k2}, keys)

	keys, err = parseSecrets(hex.EncodeToString(k1[:16]))
	require.NoError(t, err, "16 bytes, like the gossip keyring")
	assert.Equal(t, [][]byte{k1[:16]}, keys)

	for _, bad := range []string{"", "# only a comment", "secret", hex.EncodeToString(k1[:20]), base64.StdEncoding.EncodeToString(append(k1, 1))} {
		_, err := parseSecrets(bad)
		assert.Error(t, err, bad)
	}
	typo := hex.EncodeToString(k1)[:63] + "g"
	_, err = parseSecrets(typo)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), typo[:20], "errors must not repeat a secret")
}

// FuzzParseSecrets checks that whatever is accepted is a list of 32-byte
// keys, and that errors never repeat the input.
func FuzzParseSecrets(f *testing.F) {
	f.Add(hex.EncodeToString(make([]byte, 32)))
	f.Add(base64.StdEncoding.EncodeToString(make([]byte, 32)) + ",\n#x\n" + hex.EncodeToString(make([]byte, 32)))
	f.Add("not a secret")
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := parseSecrets(s)
		if err != nil {
			if len(s) >= 24 && strings.Contains(err.Error(), s) {
				t.Fatalf("error %q repeats the input", err)
			}
			return
		}
		require.NotEmpty(t, keys)
		for _, k := range keys {
			require.Contains(t, []int{16, 24, tcp.SecretKeySize}, len(k))
		}
	})
}

func TestSetKeys(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	cfg := tcp.DefaultConfig("127.0.0.1:0")
	cfg.SecretKey = k1
	tr, err := tcp.Listen(cfg)
	require.NoError(t, err)
	defer tr.Close()

	require.NoError(t, setKeys([][]byte{k1, k2}, tr), "step 1: install")
	assert.Equal(t, [][]byte{k1, k2}, tr.Keys())
	require.NoError(t, setKeys([][]byte{k2, k1}, tr), "step 2: use")
	assert.Equal(t, [][]byte{k2, k1}, tr.Keys())
	require.NoError(t, setKeys([][]byte{k2}, tr), "step 3: remove")
	assert.Equal(t, [][]byte{k2}, tr.Keys())
}
