package membership_test

import (
	"fmt"
	"log"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/require"

	"github.com/braidq/braid/router/membership"
)

func netTransport(t *testing.T) (*memberlist.NetTransport, string) {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(discard{}, "", 0),
	})
	require.NoError(t, err)
	return nt, fmt.Sprintf("127.0.0.1:%d", nt.GetAutoBindPort())
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// nextPacket returns the next packet's payload. Loopback UDP to one socket
// keeps send order, so when a packet sent after a dropped one arrives first,
// the dropped one is known to be gone without waiting for it.
func nextPacket(t *testing.T, ch <-chan *memberlist.Packet) string {
	t.Helper()
	select {
	case p := <-ch:
		return string(p.Buf)
	case <-time.After(viewTimeout):
		t.Fatal("no packet arrived")
		return ""
	}
}

func TestPartitionTransport(t *testing.T) {
	t.Parallel()
	inner, ptAddr := netTransport(t)
	pt := membership.NewPartitionTransport(inner)
	other, otherAddr := netTransport(t)
	third, _ := netTransport(t)
	t.Cleanup(func() {
		require.NoError(t, pt.Shutdown())
		require.NoError(t, pt.Shutdown(), "Shutdown is idempotent")
		require.NoError(t, other.Shutdown())
		require.NoError(t, third.Shutdown())
	})
	to := func(addr string) memberlist.Address { return memberlist.Address{Addr: addr} }

	// Incoming packets from a blocked address are discarded; others pass.
	pt.Block(otherAddr)
	_, err := other.WriteToAddress([]byte("dropped on arrival"), to(ptAddr))
	require.NoError(t, err)
	_, err = third.WriteToAddress([]byte("from an unblocked node"), to(ptAddr))
	require.NoError(t, err)
	require.Equal(t, "from an unblocked node", nextPacket(t, pt.PacketCh()))
	pt.Heal()
	_, err = other.WriteToAddress([]byte("after heal"), to(ptAddr))
	require.NoError(t, err)
	require.Equal(t, "after heal", nextPacket(t, pt.PacketCh()))

	// Outgoing packets to a blocked address are dropped without an error,
	// as a lossy network would.
	pt.Block(otherAddr)
	_, err = pt.WriteToAddress([]byte("dropped on send"), to(otherAddr))
	require.NoError(t, err)
	_, err = pt.WriteTo([]byte("dropped on send too"), otherAddr)
	require.NoError(t, err)
	pt.Heal()
	_, err = pt.WriteToAddress([]byte("sent after heal"), to(otherAddr))
	require.NoError(t, err)
	require.Equal(t, "sent after heal", nextPacket(t, other.PacketCh()))

	// Dials to a blocked address fail; others go through.
	pt.Block(otherAddr)
	_, err = pt.DialAddressTimeout(to(otherAddr), time.Second)
	require.ErrorContains(t, err, "blocked")
	_, err = pt.DialTimeout(otherAddr, time.Second)
	require.ErrorContains(t, err, "blocked")
	pt.Heal()
	conn, err := pt.DialAddressTimeout(to(otherAddr), time.Second)
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	select {
	case accepted := <-other.StreamCh():
		require.NoError(t, accepted.Close())
	case <-time.After(viewTimeout):
		t.Fatal("the healed dial never arrived")
	}
}
