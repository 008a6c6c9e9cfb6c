//! Helpers shared by the fuzz targets: build IPv4 and IPv6 TCP packets with correct
//! checksums (so mutated segments reach the state machine instead of
//! stopping at checksum verification) and read the fields of the stack's
//! answers.

/// Ones' complement sum of `data` folded into 16 bits, starting from `sum`.
fn checksum(data: &[u8], mut sum: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Make the IPv4 header and TCP checksums (or an IPv6 packet's TCP
/// checksum, when TCP follows the fixed header) right for whatever the
/// bytes say.
pub fn fix_checksums(p: &mut [u8]) {
    if p.len() >= 60 && p[0] >> 4 == 6 {
        fix_ipv6_tcp_checksum(p);
        return;
    }
    if p.len() < 20 || p[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    if ihl < 20 || ihl > total {
        return;
    }
    p[10] = 0;
    p[11] = 0;
    let c = checksum(&p[..ihl], 0);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    if p[9] != 6 || total < ihl + 20 {
        return;
    }
    let tcp_len = total - ihl;
    p[ihl + 16] = 0;
    p[ihl + 17] = 0;
    let mut pseudo = 0u32;
    for w in [&p[12..14], &p[14..16], &p[16..18], &p[18..20]] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 6 + tcp_len as u32;
    let c = checksum(&p[ihl..total], pseudo);
    p[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
}

fn fix_ipv6_tcp_checksum(p: &mut [u8]) {
    let total = (40 + usize::from(u16::from_be_bytes([p[4], p[5]]))).min(p.len());
    if p[6] != 6 || total < 60 {
        return;
    }
    let tcp_len = total - 40;
    p[56] = 0;
    p[57] = 0;
    let mut pseudo = 0u32;
    for w in p[8..40].chunks(2) {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 6 + tcp_len as u32;
    let c = checksum(&p[40..total], pseudo);
    p[56..58].copy_from_slice(&c.to_be_bytes());
}

/// TCP flag bits.
pub mod flags {
    /// No more data from the sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// The acknowledgement field is significant.
    pub const ACK: u8 = 0x10;
}

/// The header fields of one TCP segment to build.
#[derive(Debug, Clone, Copy)]
pub struct Tcp<'a> {
    /// Source address and port.
    pub src: ([u8; 4], u16),
    /// Destination address and port.
    pub dst: ([u8; 4], u16),
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flag bits (see [`flags`]).
    pub flags: u8,
    /// Advertised window.
    pub window: u16,
    /// Raw option bytes (padded to a multiple of 4, at most 40).
    pub options: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
}

/// An IPv4 packet carrying `tcp`, checksums filled in.
pub fn tcp_packet(tcp: &Tcp<'_>) -> Vec<u8> {
    let options = &tcp.options[..tcp.options.len().min(40)];
    let opt_len = options.len().div_ceil(4) * 4;
    let tcp_len = 20 + opt_len + tcp.payload.len();
    let total = (20 + tcp_len).min(usize::from(u16::MAX));
    let mut p = vec![0u8; 20 + tcp_len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // don't fragment
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&tcp.src.0);
    p[16..20].copy_from_slice(&tcp.dst.0);
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&tcp.src.1.to_be_bytes());
    t[2..4].copy_from_slice(&tcp.dst.1.to_be_bytes());
    t[4..8].copy_from_slice(&tcp.seq.to_be_bytes());
    t[8..12].copy_from_slice(&tcp.ack.to_be_bytes());
    t[12] = (((20 + opt_len) / 4) as u8) << 4;
    t[13] = tcp.flags;
    t[14..16].copy_from_slice(&tcp.window.to_be_bytes());
    t[20..20 + options.len()].copy_from_slice(options);
    t[20 + opt_len..].copy_from_slice(tcp.payload);
    p.truncate(total);
    fix_checksums(&mut p);
    p
}

/// Sequence number, acknowledgement number, flags and payload length of a
/// TCP segment the stack sent (`None` for anything else).
pub fn reply_fields(p: &[u8]) -> Option<(u32, u32, u8, usize)> {
    if p.len() < 40 || p[0] >> 4 != 4 || p[9] != 6 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    let t = p.get(ihl..total)?;
    if t.len() < 20 {
        return None;
    }
    let data_offset = usize::from(t[12] >> 4) * 4;
    let seq = u32::from_be_bytes(t[4..8].try_into().ok()?);
    let ack = u32::from_be_bytes(t[8..12].try_into().ok()?);
    Some((seq, ack, t[13], t.len().saturating_sub(data_offset)))
}
