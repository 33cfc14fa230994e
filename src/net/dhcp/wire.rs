//! IPv4 + UDP framing for DHCP on a packet socket: before it has an address the client must
//! build the IP and UDP headers itself, and check those of what it receives (a packet socket
//! sees every IP packet on the link, whole or not).

use std::net::Ipv4Addr;

const IP_HEADER: usize = 20;
const UDP_HEADER: usize = 8;
const PROTO_UDP: u8 = 17;
/// TTL of what the client sends (the value most DHCP clients use).
const TTL: u8 = 64;

/// A UDP datagram taken out of an IPv4 packet.
#[derive(Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

/// The internet checksum (RFC 1071) of `parts` taken as one byte string.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for byte in parts.iter().flat_map(|p| p.iter().copied()) {
        match odd.take() {
            Some(high) => sum += u32::from(u16::from_be_bytes([high, byte])),
            None => odd = Some(byte),
        }
    }
    if let Some(high) = odd {
        sum += u32::from(u16::from_be_bytes([high, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> [u8; 12] {
    let [a, b, c, d] = src.octets();
    let [e, f, g, h] = dst.octets();
    let [l0, l1] = udp_len.to_be_bytes();
    [a, b, c, d, e, f, g, h, 0, PROTO_UDP, l0, l1]
}

/// An IPv4 packet (no options, DF clear) carrying `payload` in a UDP datagram, checksums set.
/// `None` when the payload does not fit one packet.
pub fn encode(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let udp_len = u16::try_from(UDP_HEADER + payload.len()).ok()?;
    let total = u16::try_from(IP_HEADER + usize::from(udp_len)).ok()?;
    let mut ip = [0u8; IP_HEADER];
    ip[0] = 0x45; // version 4, 5 words
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = TTL;
    ip[9] = PROTO_UDP;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());

    let mut udp = [0u8; UDP_HEADER];
    udp[0..2].copy_from_slice(&src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let sum = match checksum(&[&pseudo_header(src, dst, udp_len), &udp, payload]) {
        0 => 0xffff, // 0 means "no checksum" in UDP
        sum => sum,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());

    let mut packet = Vec::with_capacity(usize::from(total));
    packet.extend_from_slice(&ip);
    packet.extend_from_slice(&udp);
    packet.extend_from_slice(payload);
    Some(packet)
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    bytes.get(at..at + 2).and_then(|b| <[u8; 2]>::try_from(b).ok()).map(u16::from_be_bytes)
}

/// The UDP datagram in an IPv4 packet, when the packet is whole and valid: version 4, a header
/// of 20–60 bytes with a correct checksum, not a fragment, protocol UDP, lengths that agree,
/// and a correct UDP checksum unless the sender left it 0 or it is not filled in yet
/// (checksum offload). Bytes past the IP total length
/// (Ethernet padding) are ignored.
pub fn decode(packet: &[u8]) -> Option<Datagram<'_>> {
    let (&first, _) = packet.split_first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < IP_HEADER {
        return None;
    }
    let header = packet.get(..header_len)?;
    let word = |at: usize| be16(header, at);
    let addr = |at: usize| header.get(at..at + 4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(Ipv4Addr::from);
    let total = usize::from(word(2)?);
    let fragment = word(6)? & 0x3fff; // MF flag and fragment offset
    if checksum(&[header]) != 0 || fragment != 0 || *header.get(9)? != PROTO_UDP || total < header_len {
        return None;
    }
    let (src, dst) = (addr(12)?, addr(16)?);
    let udp = packet.get(header_len..total)?;
    let field = |at: usize| be16(udp, at);
    let (src_port, dst_port, udp_len, sum) = (field(0)?, field(2)?, field(4)?, field(6)?);
    let udp = udp.get(..usize::from(udp_len))?;
    let pseudo = pseudo_header(src, dst, udp_len);
    // A sender with checksum offload (veth, virtio) hands the packet to a packet socket before
    // the NIC fills the checksum in: the field then holds the pseudo-header's sum only
    // (what PACKET_AUXDATA would flag TP_STATUS_CSUMNOTREADY).
    let not_ready = sum == !checksum(&[&pseudo]);
    if usize::from(udp_len) < UDP_HEADER || (sum != 0 && !not_ready && checksum(&[&pseudo, udp]) != 0) {
        return None;
    }
    Some(Datagram { src, dst, src_port, dst_port, payload: udp.get(UDP_HEADER..)? })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const BCAST: Ipv4Addr = Ipv4Addr::BROADCAST;

    #[test]
    fn round_trip_and_checksums_verified() {
        let packet = encode(Ipv4Addr::UNSPECIFIED, BCAST, 68, 67, b"hello dhcp").unwrap();
        assert_eq!(packet.len(), 20 + 8 + 10);
        assert_eq!(checksum(&[&packet[..20]]), 0, "IP header checksum");
        let d = decode(&packet).unwrap();
        assert_eq!(
            (d.src, d.dst, d.src_port, d.dst_port, d.payload),
            (Ipv4Addr::UNSPECIFIED, BCAST, 68, 67, &b"hello dhcp"[..])
        );
        // Ethernet pads short frames: bytes past the total length are not the payload.
        let mut padded = packet.clone();
        padded.extend_from_slice(&[0; 18]);
        assert_eq!(decode(&padded).unwrap().payload, b"hello dhcp");
    }

    #[test]
    fn odd_lengths_checksum_like_the_kernel() {
        // A known packet: checksum over an odd-length payload.
        let packet = encode(SRC, BCAST, 67, 68, b"abc").unwrap();
        assert!(decode(&packet).is_some());
        let mut bad = packet.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(decode(&bad).is_none(), "a corrupt payload fails the UDP checksum");
        let mut zero = packet;
        zero[26] = 0;
        zero[27] = 0;
        *zero.last_mut().unwrap() ^= 1;
        assert!(decode(&zero).is_some(), "checksum 0: none was computed");
    }

    #[test]
    fn checksum_left_to_the_nic_is_taken() {
        // As a packet socket sees a veth peer's packet: the field holds the pseudo-header sum.
        let mut packet = encode(SRC, BCAST, 67, 68, b"offloaded").unwrap();
        let pseudo = !checksum(&[&pseudo_header(SRC, BCAST, 8 + 9)]);
        packet[26..28].copy_from_slice(&pseudo.to_be_bytes());
        assert!(decode(&packet).is_some());
        packet[26] ^= 0x40;
        assert!(decode(&packet).is_none(), "neither right nor partial");
    }

    #[test]
    fn refuses_what_is_not_a_whole_udp_packet() {
        let packet = encode(SRC, BCAST, 67, 68, b"payload").unwrap();
        for cut in 0..packet.len() {
            assert!(decode(&packet[..cut]).is_none(), "cut at {cut}");
        }
        let mut tcp = packet.clone();
        tcp[9] = 6;
        assert!(decode(&tcp).is_none(), "not UDP (and the header checksum is now wrong)");
        let mut fragment = packet.clone();
        fragment[6] = 0x20; // MF
        assert!(decode(&fragment).is_none());
        let mut v6 = packet.clone();
        v6[0] = 0x65;
        assert!(decode(&v6).is_none());
        let mut short_ihl = packet.clone();
        short_ihl[0] = 0x44;
        assert!(decode(&short_ihl).is_none());
        let mut long_udp = packet;
        long_udp[24..26].copy_from_slice(&200u16.to_be_bytes());
        assert!(decode(&long_udp).is_none(), "UDP length past the packet");
        assert!(encode(SRC, BCAST, 1, 2, &vec![0; 70_000]).is_none());
    }
}
