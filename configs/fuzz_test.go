package configs

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// fuzzPassword is placed in DSNs of the seed corpus. No error may show it.
const fuzzPassword = "s3cr3t-PW"

// onlyInPasswordPositions reports whether every occurrence of token in data
// sits where a password goes: between ':' and '@' (URL userinfo), or after
// password= (keyword/value or query). Mutations that move the token into
// another field (a shard name, a key) make it an ordinary value, which errors
// may quote; the test only holds the code to its promise about passwords.
func onlyInPasswordPositions(data []byte, token string) bool {
	return countInPasswordPositions(data, token, token)
}

// countInPasswordPositions compares the occurrences of needle with those of
// placed in password positions; needle is a part of placed.
func countInPasswordPositions(data []byte, needle, placed string) bool {
	s := strings.ToLower(string(data))
	needle, placed = strings.ToLower(needle), strings.ToLower(placed)
	total := strings.Count(s, needle)
	inPlace := strings.Count(s, ":"+placed+"@") +
		strings.Count(s, "password="+placed) +
		strings.Count(s, "password='"+placed)
	return total == inPlace
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(validYAML))
	example, err := os.ReadFile("example.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	f.Add(bytes.ReplaceAll(example, []byte("${PG_A_PASSWORD:-braid-a}"), []byte(fuzzPassword)))
	f.Add(bytes.ReplaceAll(example, []byte("${PG_C_PASSWORD:-braid-c}"), []byte(fuzzPassword)))
	for _, broken := range []string{
		"10.0.0.1:54x32",
		"10.0.0.1:5432/braid?connect_timeout=x",
		"[::1",
		"10.0.0.1:5432/braid?target_session_attrs=s3cr3t-PW",
	} {
		f.Add([]byte(strings.Replace(validYAML, "10.0.0.1:5432/braid", broken, 1)))
	}
	f.Add([]byte("cluster: c\nshards:\n  - {id: 1, name: a, dsn: 'host=h password=s3cr3t-PW port=x'}\ncatalog: {dsn: postgres://c:s3cr3t-PW@h:x/db}\n"))
	f.Add([]byte("cluster: c\nshards:\n  - {id: 1, name: a, dsn: \"postgres://u:${PG_A_PASSWORD}@h/db\"}\ncatalog: a\n"))

	getenv := env(map[string]string{"PG_A_PASSWORD": fuzzPassword, "PORT": "5432"})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, getenv)
		if err == nil {
			// What Parse accepts, Validate accepts.
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate rejects: %v", verr)
			}
			return
		}
		if !onlyInPasswordPositions(data, fuzzPassword) || !countInPasswordPositions(data, "PG_A_PASSWORD", "${PG_A_PASSWORD}") {
			return
		}
		if strings.Contains(err.Error(), fuzzPassword) {
			t.Fatalf("error shows the password:\n%v\ninput:\n%s", err, data)
		}
	})
}
