package datapath

import (
	"encoding/binary"

	"github.com/stampede-sim/stampede/internal/policykey"
)

// craftPacket builds an Ethernet/IPv4 frame for p: a TCP SYN, a UDP
// datagram, or (other protocols) an IPv4 header and 8 bytes of payload.
func craftPacket(p Packet) []byte {
	var l4 []byte
	switch p.Proto {
	case policykey.ProtoTCP:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		l4[12] = 5 << 4 // data offset
		l4[13] = 0x02   // SYN
		binary.BigEndian.PutUint16(l4[14:], 64240)
	case policykey.ProtoUDP:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], p.DstPort)
		binary.BigEndian.PutUint16(l4[4:], 8)
	default:
		l4 = make([]byte, 8)
	}
	b := make([]byte, 14+20+len(l4))
	copy(b[0:6], []byte{0x02, 0, 0, 0, 0, 0x02})  // destination MAC
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 0x01}) // source MAC
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip[8] = 64
	ip[9] = p.Proto
	src, dst := p.Src.As4(), p.Dst.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	copy(b[34:], l4)
	return b
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
