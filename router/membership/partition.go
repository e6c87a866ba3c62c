package membership

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// PartitionTransport is the chaos and test tool for gossip partitions: it
// wraps a memberlist transport and cuts this node off from a set of blocked
// addresses (gossip host:port, as Membership.Addr returns them). Install it
// with Config.Transport:
//
//	var pt *membership.PartitionTransport
//	cfg.Transport = func(t memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
//		pt = membership.NewPartitionTransport(t)
//		return pt
//	}
//
// Packets to a blocked address are dropped silently, as a lossy network
// would; packets from one are discarded on arrival; dials to one fail.
// Incoming TCP streams cannot be attributed (they come from an ephemeral
// port), so a clean two-way split blocks each side on both sides' transports.
type PartitionTransport struct {
	memberlist.NodeAwareTransport

	packets   chan *memberlist.Packet
	stop      chan struct{} // Shutdown began: stop forwarding
	innerDown chan struct{} // the inner transport is shut down
	wg        sync.WaitGroup
	once      sync.Once

	mu      sync.RWMutex
	blocked map[string]bool
}

// NewPartitionTransport wraps inner; it blocks nothing until Block. It starts
// one goroutine that filters incoming packets, ended by Shutdown.
func NewPartitionTransport(inner memberlist.NodeAwareTransport) *PartitionTransport {
	t := &PartitionTransport{
		NodeAwareTransport: inner,
		packets:            make(chan *memberlist.Packet),
		stop:               make(chan struct{}),
		innerDown:          make(chan struct{}),
		blocked:            map[string]bool{},
	}
	t.wg.Go(t.filterPackets)
	return t
}

// Block cuts this node off from addrs (host:port) in both directions.
func (t *PartitionTransport) Block(addrs ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range addrs {
		t.blocked[canonicalAddr(a)] = true
	}
}

// Heal unblocks every address.
func (t *PartitionTransport) Heal() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.blocked)
}

func (t *PartitionTransport) isBlocked(addr string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.blocked) > 0 && t.blocked[canonicalAddr(addr)]
}

// canonicalAddr spells an IP:port the way net.Addr.String does, so that
// "127.0.0.1:7946" and "[::ffff:127.0.0.1]:7946" match; other strings are
// kept as they are.
func canonicalAddr(a string) string {
	ap, err := netip.ParseAddrPort(a)
	if err != nil {
		return a
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// WriteTo implements memberlist.Transport.
func (t *PartitionTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.isBlocked(addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *PartitionTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	if t.isBlocked(addr.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, addr)
}

// DialTimeout implements memberlist.Transport.
func (t *PartitionTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.isBlocked(addr) {
		return nil, fmt.Errorf("partition transport: dial %s: blocked", addr)
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *PartitionTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.isBlocked(addr.Addr) {
		return nil, fmt.Errorf("partition transport: dial %s: blocked", addr.Addr)
	}
	return t.NodeAwareTransport.DialAddressTimeout(addr, timeout)
}

// PacketCh implements memberlist.Transport: the inner transport's packets
// minus those from blocked addresses.
func (t *PartitionTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *PartitionTransport) filterPackets() {
	in := t.NodeAwareTransport.PacketCh()
	defer func() {
		// Shutting down: memberlist may have stopped reading, but the inner
		// listeners may still be blocked handing over a packet, and the
		// inner Shutdown waits for them. Drop packets until it returns.
		for {
			select {
			case <-in:
			case <-t.innerDown:
				return
			}
		}
	}()
	for {
		select {
		case <-t.stop:
			return
		case p := <-in:
			if p.From != nil && t.isBlocked(p.From.String()) {
				continue
			}
			select {
			case t.packets <- p:
			case <-t.stop:
				return
			}
		}
	}
}

// Shutdown implements memberlist.Transport; it is idempotent.
func (t *PartitionTransport) Shutdown() error {
	var err error
	t.once.Do(func() {
		close(t.stop)
		err = t.NodeAwareTransport.Shutdown()
		close(t.innerDown)
		t.wg.Wait()
	})
	return err
}
