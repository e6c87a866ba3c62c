package membership_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/router/membership"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	valid := func() membership.Config {
		return membership.Config{NodeID: "node-1", Roles: []string{membership.RoleWorker}, Capacity: 4}
	}
	tests := []struct {
		name   string
		modify func(*membership.Config)
		want   []string // substrings of the error; none = valid
	}{
		{"a minimal config is valid", func(*membership.Config) {}, nil},
		{"a node id is required", func(c *membership.Config) { c.NodeID = "" }, []string{`NodeID ""`}},
		{"a node id with a space is refused", func(c *membership.Config) { c.NodeID = "node 1" }, []string{`NodeID "node 1"`, "[A-Za-z0-9_.-]"}},
		{"a node id over 64 characters is refused", func(c *membership.Config) { c.NodeID = strings.Repeat("n", 65) }, []string{"NodeID", "1..64"}},
		{"an unknown role is refused", func(c *membership.Config) { c.Roles = []string{"worker", "janitor"} }, []string{`Roles[1] "janitor"`}},
		{"a repeated role is refused", func(c *membership.Config) { c.Roles = []string{"worker", "worker"} }, []string{`Roles[1] "worker": listed twice`}},
		{"capacity must be positive", func(c *membership.Config) { c.Capacity = 0 }, []string{"Capacity 0"}},
		{"a bad queue name is refused", func(c *membership.Config) { c.Queues = []string{"ok", "not ok"} }, []string{"Queues[1]", `"not ok"`}},
		{"a repeated queue is refused", func(c *membership.Config) { c.Queues = []string{"a", "a"} }, []string{`Queues[1] "a": listed twice`}},
		{"too many queues overflow the node meta", func(c *membership.Config) {
			for i := range 40 {
				c.Queues = append(c.Queues, strings.Repeat("q", 16)+string(rune('A'+i)))
			}
		}, []string{"40 queues", "over memberlist's limit of 512"}},
		{"an unknown preset is refused", func(c *membership.Config) { c.Preset = "wan" }, []string{`Preset "wan"`}},
		{"a host name is not a bind address", func(c *membership.Config) { c.BindAddr = "localhost" }, []string{`BindAddr "localhost": must be an IP address`}},
		{"binding beyond loopback needs a key", func(c *membership.Config) { c.BindAddr = "0.0.0.0" }, []string{`BindAddr "0.0.0.0" is beyond loopback without SecretKey`}},
		{"binding beyond loopback with a key is fine", func(c *membership.Config) {
			c.BindAddr, c.SecretKey = "0.0.0.0", make([]byte, 32)
		}, nil},
		{"binding beyond loopback insecurely when allowed", func(c *membership.Config) {
			c.BindAddr, c.AllowInsecure = "10.1.2.3", true
		}, nil},
		{"IPv6 loopback needs no key", func(c *membership.Config) { c.BindAddr = "::1" }, nil},
		{"a bind port out of range is refused", func(c *membership.Config) { c.BindPort = 70000 }, []string{"BindPort 70000"}},
		{"an advertise address must be an IP", func(c *membership.Config) { c.AdvertiseAddr = "node.example" }, []string{`AdvertiseAddr "node.example"`}},
		{"an advertise port out of range is refused", func(c *membership.Config) { c.AdvertisePort = -1 }, []string{"AdvertisePort -1"}},
		{"a seed needs a port", func(c *membership.Config) { c.Seeds = []string{"127.0.0.1:7946", "10.0.0.1"} }, []string{`Seeds[1] "10.0.0.1"`}},
		{"a seed port must be a number", func(c *membership.Config) { c.Seeds = []string{"host:http"} }, []string{`Seeds[0] "host:http"`}},
		{"a negative rejoin interval is refused", func(c *membership.Config) { c.RejoinInterval = -1 }, []string{"RejoinInterval -1ns"}},
		{"a label over 255 bytes is refused", func(c *membership.Config) { c.ClusterLabel = strings.Repeat("l", 256) }, []string{"ClusterLabel of 256 bytes"}},
		{"a key must be an AES key size", func(c *membership.Config) { c.SecretKey = make([]byte, 20) }, []string{"SecretKey of 20 bytes"}},
		{"every problem is reported at once", func(c *membership.Config) {
			c.NodeID, c.Capacity, c.Preset, c.SecretKey = "", -1, "slow", []byte("short")
		}, []string{"NodeID", "Capacity -1", `Preset "slow"`, "SecretKey of 5 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := valid()
			tt.modify(&cfg)
			err := cfg.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestStartRefusesInvalidConfig(t *testing.T) {
	t.Parallel()
	_, err := membership.Start(t.Context(), membership.Config{NodeID: "n", Capacity: 1, BindAddr: "0.0.0.0"}, membership.Deps{})
	require.ErrorContains(t, err, "beyond loopback without SecretKey")
}
