package datapath

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// TestProgramRawPackets runs the BPF program on frames that Check never
// builds: not IPv4, malformed, fragments, IP options.
func TestProgramRawPackets(t *testing.T) {
	d := open(t, KindBPF, Config{}).(*bpfDatapath)
	const id identity.ID = 1000
	must(t, d.UpsertIPCache([]IPCacheEntry{{host(clientIP), id}}))
	must(t, d.ReplacePolicy(serverIP, []policykey.Key{{Identity: id, Port: 8080, Proto: policykey.ProtoTCP}}))
	anyPort := netip.AddrFrom4([4]byte{10, 0, 2, 8})
	must(t, d.ReplacePolicy(anyPort, []policykey.Key{{Identity: id, Port: 0, Proto: policykey.ProtoTCP}}))

	tcp := func(dst [4]byte, port uint16) []byte {
		return craftPacket(Packet{Src: clientIP, Dst: netip.AddrFrom4(dst), DstPort: port, Proto: policykey.ProtoTCP})
	}
	arp := tcp(serverIP.As4(), 8080)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	shortIHL := tcp(serverIP.As4(), 8080)
	shortIHL[14] = 0x44
	truncated := tcp(serverIP.As4(), 8080)[:14+20+10]
	fragment := func(dst [4]byte) []byte {
		b := tcp(dst, 8080)
		binary.BigEndian.PutUint16(b[14+6:], 185) // offset 185*8, no L4 header
		return b
	}
	withOptions := func(port uint16) []byte {
		b := tcp(serverIP.As4(), port)
		out := append([]byte{}, b[:34]...)
		out = append(out, 1, 1, 1, 1) // four NOP options
		out = append(out, b[34:]...)
		out[14] = 0x46
		binary.BigEndian.PutUint16(out[16:], uint16(len(out)-14))
		return out
	}

	for _, tc := range []struct {
		name string
		pkt  []byte
		want uint32
	}{
		{"allowed", tcp(serverIP.As4(), 8080), tcActOK},
		{"arp is not ours", arp, tcActUnspec},
		{"ihl below 5 is not ours", shortIHL, tcActUnspec},
		{"truncated tcp header dropped", truncated, tcActShot},
		{"fragment cannot match a port", fragment(serverIP.As4()), tcActShot},
		{"fragment matches any port", fragment(anyPort.As4()), tcActOK},
		{"ip options: l4 found after them", withOptions(8080), tcActOK},
		{"ip options: other port", withOptions(8081), tcActShot},
	} {
		ret, err := d.objs.StampedeIngress.Run(&ebpf.RunOptions{Data: tc.pkt})
		if err != nil {
			t.Fatalf("%s: run: %v", tc.name, err)
		}
		if ret != tc.want {
			t.Errorf("%s: program returned %d, want %d", tc.name, int32(ret), int32(tc.want))
		}
	}
	var per []uint64
	must(t, d.objs.Verdicts.Lookup(uint32(verdictIndexNotIPv4), &per))
	var n uint64
	for _, v := range per {
		n += v
	}
	if n != 2 {
		t.Errorf("not-IPv4 counter: %d, want 2", n)
	}
}
