//! Parsing, emission and cutting, for IPv4 and IPv6.

use super::*;

fn tcp_of(packet: &[u8]) -> TcpRepr<'_> {
    match parse(packet) {
        Ok(Packet::Tcp(s)) => s.tcp,
        other => panic!("not a valid TCP segment: {other:?}"),
    }
}

#[test]
fn a_cut_segment_is_two_valid_segments_carrying_the_same_bytes() {
    let payload: Vec<u8> = (0..65_400u32).map(|i| (i % 251) as u8).collect();
    let mut packet = test_segment(TcpControl::Fin, &payload);
    let mut rest = vec![0u8; 65_535];
    let (a, b) = split_tcp(&mut packet, 30_000, &mut rest).unwrap();
    let (first, second) = (tcp_of(&packet[..a]), tcp_of(&rest[..b]));
    assert_eq!(first.seq_number, TcpSeqNumber(1_000));
    assert_eq!(second.seq_number, TcpSeqNumber(31_000));
    assert_eq!(first.control, TcpControl::None);
    assert_eq!(second.control, TcpControl::Fin);
    assert_eq!(first.timestamp, second.timestamp);
    assert_eq!([first.payload, second.payload].concat(), payload);
}

#[test]
fn a_large_segment_is_cut_as_segmentation_offload_would() {
    let payload: Vec<u8> = (0..5_000u32).map(|i| (i % 253) as u8).collect();
    let packet = test_segment(TcpControl::Fin, &payload);
    let parts = segment_tcp(&packet, 1448).unwrap();
    assert_eq!(parts.len(), 4);
    let tcps: Vec<TcpRepr<'_>> = parts.iter().map(|p| tcp_of(p)).collect();
    for (i, t) in tcps.iter().enumerate() {
        assert_eq!(t.seq_number, TcpSeqNumber(1_000 + 1448 * i as i32));
        let fin = i == 3;
        assert_eq!(t.control == TcpControl::Fin, fin, "part {i}");
    }
    assert_eq!(
        tcps.iter()
            .flat_map(|t| t.payload.to_vec())
            .collect::<Vec<_>>(),
        payload
    );
    assert_eq!(segment_tcp(&packet, 0), None);
    let one = segment_tcp(&packet, 10_000).unwrap();
    assert_eq!(one, vec![packet.clone()]);
}

#[test]
fn what_cannot_be_cut_is_left_alone() {
    let mut rest = vec![0u8; 65_535];
    let mut syn = test_segment(TcpControl::Syn, &[1; 100]);
    let before = syn.clone();
    assert_eq!(split_tcp(&mut syn, 50, &mut rest), None);
    assert_eq!(syn, before);
    let mut short = test_segment(TcpControl::Psh, &[1; 100]);
    assert_eq!(split_tcp(&mut short, 100, &mut rest), None);
    assert_eq!(split_tcp(&mut short, 0, &mut rest), None);
    assert_eq!(split_tcp(&mut short, 50, &mut rest[..60]), None);
    assert_eq!(split_tcp(&mut short[..30], 10, &mut rest), None);
    assert_eq!(split_tcp(&mut [0u8; 0], 10, &mut rest), None);
    let mut udp = short.clone();
    udp[9] = 17;
    assert_eq!(split_tcp(&mut udp, 50, &mut rest), None);
}
