//! The messages byte for byte as nbd-netlink.h lays them out, written by hand: nlmsghdr (len,
//! type, flags REQUEST|ACK = 5, seq, pid 0), genlmsghdr (command, version 1, 0), then each
//! attribute (u16 length with its 4-byte header, u16 type, data padded to 4). Native byte order:
//! little-endian, x86-64's.
use super::*;
use crate::net::netlink::request;

/// The whole message as `exchange` frames it (it adds NLM_F_ACK).
fn framed(ty: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    request(ty, 4, seq, body)
}

#[test]
fn get_family_asks_the_controller_for_nbd() {
    #[rustfmt::skip]
    let want = [
        28, 0, 0, 0, 0x10, 0, 5, 0, 1, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: 28 bytes, GENL_ID_CTRL
        3, 1, 0, 0,                                           // CTRL_CMD_GETFAMILY, version 1
        8, 0, 2, 0, b'n', b'b', b'd', 0,                      // CTRL_ATTR_FAMILY_NAME "nbd\0"
    ];
    assert_eq!(framed(GENL_ID_CTRL, 1, &family_request()), want);
}

#[test]
fn connect_carries_every_attribute_and_the_socket() {
    let c = NbdConnect {
        index: None,
        size: 1 << 20,
        block_size: 4096,
        server_flags: 0x0143,
        timeout: 30,
        dead_conn_timeout: 120,
        backend: "root".into(),
        fd: 3,
    };
    #[rustfmt::skip]
    let want = [
        120, 0, 0, 0, 0x1a, 0, 5, 0, 7, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: 120 bytes, family 0x1a, seq 7
        1, 1, 0, 0,                                          // NBD_CMD_CONNECT, version 1
        12, 0, 2, 0, 0, 0, 0x10, 0, 0, 0, 0, 0,              // SIZE_BYTES 1 MiB
        12, 0, 3, 0, 0, 0x10, 0, 0, 0, 0, 0, 0,              // BLOCK_SIZE_BYTES 4096
        12, 0, 5, 0, 0x43, 0x01, 0, 0, 0, 0, 0, 0,           // SERVER_FLAGS 0x143
        12, 0, 4, 0, 30, 0, 0, 0, 0, 0, 0, 0,                // TIMEOUT 30 s
        12, 0, 8, 0, 120, 0, 0, 0, 0, 0, 0, 0,               // DEAD_CONN_TIMEOUT 120 s
        12, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0,                 // CLIENT_FLAGS 0: no DESTROY_ON_DISCONNECT
        9, 0, 10, 0, b'r', b'o', b'o', b't', 0, 0, 0, 0,     // BACKEND_IDENTIFIER "root\0", padded
        16, 0, 7, 0x80,                                      // SOCKETS, nested
        12, 0, 1, 0x80,                                      //   SOCK_ITEM, nested
        8, 0, 1, 0, 3, 0, 0, 0,                              //     SOCK_FD 3
    ];
    assert_eq!(framed(0x1a, 7, &connect_request(&c)), want);
    // With a device index, INDEX comes first.
    let on_2 = connect_request(&NbdConnect { index: Some(2), ..c });
    assert_eq!(on_2[4..12], [8, 0, 1, 0, 2, 0, 0, 0]);
    assert_eq!(on_2.len(), 104 + 8);
}

#[test]
fn reconfigure_names_device_backend_and_socket() {
    #[rustfmt::skip]
    let want = [
        56, 0, 0, 0, 0x1a, 0, 5, 0, 2, 0, 0, 0, 0, 0, 0, 0,
        3, 1, 0, 0,                                          // NBD_CMD_RECONFIGURE
        8, 0, 1, 0, 0, 0, 0, 0,                              // INDEX 0
        9, 0, 10, 0, b'r', b'o', b'o', b't', 0, 0, 0, 0,     // BACKEND_IDENTIFIER
        16, 0, 7, 0x80, 12, 0, 1, 0x80, 8, 0, 1, 0, 5, 0, 0, 0, // SOCKETS { SOCK_ITEM { SOCK_FD 5 } }
    ];
    assert_eq!(framed(0x1a, 2, &reconfigure_request(0, "root", 5)), want);
}

#[test]
fn status_of_one_device_or_all() {
    assert_eq!(
        framed(0x1a, 3, &status_request(None)),
        [20, 0, 0, 0, 0x1a, 0, 5, 0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 1, 0, 0]
    );
    #[rustfmt::skip]
    let one = [28, 0, 0, 0, 0x1a, 0, 5, 0, 3, 0, 0, 0, 0, 0, 0, 0, 5, 1, 0, 0, 8, 0, 1, 0, 2, 0, 0, 0];
    assert_eq!(framed(0x1a, 3, &status_request(Some(2))), one);
}

/// A nested attribute as the kernel writes it (nla_nest_start_noflag: no NLA_F_NESTED).
fn nest(ty: u16, items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    attr(&mut out, ty, &items.concat());
    out
}

fn one(ty: u16, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    attr(&mut out, ty, data);
    out
}

/// The controller's reply for nbd: id 0x1a, and two groups, nbd's second.
fn family_reply() -> Vec<u8> {
    let group =
        |name: &[u8], id: u32| [one(CTRL_ATTR_MCAST_GRP_NAME, name), one(CTRL_ATTR_MCAST_GRP_ID, &id.to_ne_bytes())];
    let mut body = vec![1, 2, 0, 0]; // CTRL_CMD_NEWFAMILY, version 2
    body.extend(one(CTRL_ATTR_FAMILY_NAME, b"nbd\0"));
    body.extend(one(CTRL_ATTR_FAMILY_ID, &0x1au16.to_ne_bytes()));
    body.extend(one(3, &1u32.to_ne_bytes())); // CTRL_ATTR_VERSION
    body.extend(nest(CTRL_ATTR_MCAST_GROUPS, &[nest(1, &group(b"other\0", 4)), nest(2, &group(b"nbd_mc_group\0", 9))]));
    body
}

#[test]
fn family_id_and_group_from_the_controller() {
    assert_eq!(parse_family(&family_reply()), Ok(NbdFamily { id: 0x1a, group: Some(9) }));
    // Without groups: no group; without an id: an error.
    let mut body = vec![1, 2, 0, 0];
    body.extend(one(CTRL_ATTR_FAMILY_ID, &0x1bu16.to_ne_bytes()));
    assert_eq!(parse_family(&body), Ok(NbdFamily { id: 0x1b, group: None }));
    assert!(parse_family(&[1, 2, 0, 0]).is_err());
    assert!(parse_family(&[1, 2]).is_err());
}

#[test]
fn connect_reply_names_the_device() {
    let mut body = vec![NBD_CMD_CONNECT, 1, 0, 0];
    body.extend(one(NBD_ATTR_INDEX, &3u32.to_ne_bytes()));
    assert_eq!(parse_connect_reply(&body, 0x1a), Ok(3));
    assert!(parse_connect_reply(&[NBD_CMD_CONNECT, 1, 0, 0], 0x1a).is_err());
    assert!(parse_connect_reply(&[NBD_CMD_CONNECT, 1, 0, 0, 6, 0, 1, 0, 3, 0], 0x1a).is_err());
}

#[test]
fn status_reply_lists_devices() {
    let device = |index: u32, connected: u8| {
        nest(NBD_DEVICE_ITEM, &[one(NBD_DEVICE_INDEX, &index.to_ne_bytes()), one(NBD_DEVICE_CONNECTED, &[connected])])
    };
    let mut body = vec![NBD_CMD_STATUS, 1, 0, 0];
    body.extend(nest(NBD_ATTR_DEVICE_LIST, &[device(0, 1), device(1, 0)]));
    assert_eq!(
        parse_status(&body, 0x1a),
        Ok(vec![NbdDevice { index: 0, connected: true }, NbdDevice { index: 1, connected: false }])
    );
    // A device item without its index is an error, not a device 0.
    let mut body = vec![NBD_CMD_STATUS, 1, 0, 0];
    body.extend(nest(NBD_ATTR_DEVICE_LIST, &[nest(NBD_DEVICE_ITEM, &[one(NBD_DEVICE_CONNECTED, &[1])])]));
    assert!(parse_status(&body, 0x1a).is_err());
}

#[test]
fn link_dead_multicast_gives_the_index() {
    let msg = |ty: u16, cmd: u8, index: u32| {
        let mut body = vec![cmd, 1, 0, 0];
        body.extend(one(NBD_ATTR_INDEX, &index.to_ne_bytes()));
        request(ty, 0, 0, &body)
    };
    let datagram =
        [msg(0x1a, NBD_CMD_LINK_DEAD, 2), msg(0x1b, NBD_CMD_LINK_DEAD, 5), msg(0x1a, NBD_CMD_STATUS, 6)].concat();
    assert_eq!(parse_link_dead(&datagram, 0x1a), Ok(vec![2]));
    assert_eq!(
        parse_link_dead(&datagram[..datagram.len() - 1], 0x1a).unwrap_err(),
        ParseError::BadMessage { offset: 56 }
    );
    assert_eq!(parse_link_dead(&[], 0x1a), Ok(vec![]));
}

#[test]
fn hostile_replies_never_panic() {
    let good = family_reply();
    for cut in 0..good.len() {
        let _ = parse_family(&good[..cut]);
        let _ = parse_status(&good[..cut], 0x10);
        let _ = parse_connect_reply(&good[..cut], 0x10);
        let _ = parse_link_dead(&good[..cut], 0x10);
    }
    for at in 0..good.len() {
        for v in [0u8, 1, 3, 4, 0x7f, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[at] = v;
            let _ = parse_family(&bad);
            let _ = parse_status(&bad, 0x10);
        }
    }
}
