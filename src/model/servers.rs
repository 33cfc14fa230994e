//! Several NFS servers for one root: the list as the command line and DHCP give it, and the
//! order a client tries them in. The order is rendezvous (highest random weight) hashing over
//! the client's MAC: each client starts with the server it weighs highest, so clients spread
//! evenly, and adding or removing a server moves only the clients that server gains or loses.
//! SHA-256, not a faster hash: sequential MACs (one vendor's, one batch's) spread badly through
//! FNV without a finaliser, and std's hasher is not stable across Rust releases.

use std::cmp::Reverse;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use crate::model::text::quoted;

/// The most servers one root names.
pub const MAX_SERVERS: usize = 16;

/// The servers of `<server>[,<server>...]`: IPv4 addresses (PID 1 does no DNS), at most
/// [`MAX_SERVERS`], none twice; at least one.
pub fn parse(text: &str) -> Result<Vec<Ipv4Addr>, String> {
    let named = text.split(',').count();
    if named > MAX_SERVERS {
        return Err(format!("{named} servers (at most {MAX_SERVERS})"));
    }
    let mut servers = Vec::with_capacity(named);
    for server in text.split(',') {
        let addr = server
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("server {} is not an IPv4 address (no DNS at boot)", quoted(server)))?;
        if servers.contains(&addr) {
            return Err(format!("server {addr} is named twice"));
        }
        servers.push(addr);
    }
    Ok(servers)
}

/// `server`'s weight for the client with `mac`: the first 8 bytes (big-endian) of
/// SHA-256("stateless-hrw-v1\0" ‖ MAC ‖ "\0" ‖ the server as a dotted quad).
fn weight(mac: &[u8; 6], server: Ipv4Addr) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"stateless-hrw-v1\0")
        .chain_update(mac)
        .chain_update(b"\0")
        .chain_update(server.to_string())
        .finalize();
    let mut first = [0; 8];
    first.iter_mut().zip(digest.iter()).for_each(|(to, from)| *to = *from);
    u64::from_be_bytes(first)
}

/// The order the client with `mac` tries `servers` in: the heaviest first, ties by address;
/// without a MAC, as given.
pub fn order(servers: &[Ipv4Addr], mac: Option<[u8; 6]>) -> Vec<Ipv4Addr> {
    let mut ordered = servers.to_vec();
    if let Some(mac) = mac {
        ordered.sort_by_cached_key(|&server| (Reverse(weight(&mac, server)), server));
    }
    ordered
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// 200 MACs of one vendor, one after the other: the worst a lab's batch of machines gives.
    fn macs() -> Vec<[u8; 6]> {
        (0x34..0x34 + 200u16).map(|i| [0x52, 0x54, 0x00, 0x12, (i >> 8) as u8, i as u8]).collect()
    }

    fn servers(n: u8) -> Vec<Ipv4Addr> {
        (1..=n).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect()
    }

    fn first(servers: &[Ipv4Addr], mac: [u8; 6]) -> Ipv4Addr {
        order(servers, Some(mac))[0]
    }

    #[test]
    fn clients_spread_evenly() {
        for n in 2..=5u8 {
            let servers = servers(n);
            let counts: Vec<usize> =
                servers.iter().map(|s| macs().into_iter().filter(|&m| first(&servers, m) == *s).count()).collect();
            // For the docs: cargo test --lib model::servers -- --nocapture
            println!("{n} servers, 200 sequential MACs: {counts:?}");
            let share = 200.0 / f64::from(n);
            assert!(counts.iter().all(|&c| (0.6 * share..=1.4 * share).contains(&(c as f64))), "{n}: {counts:?}");
        }
    }

    #[test]
    fn removing_a_server_moves_only_its_clients() {
        let (all, gone) = (servers(5), Ipv4Addr::new(10, 0, 0, 3));
        let left: Vec<Ipv4Addr> = all.iter().copied().filter(|&s| s != gone).collect();
        let mut moved = 0;
        for mac in macs() {
            let (before, after) = (first(&all, mac), first(&left, mac));
            assert!(before == after || before == gone, "{mac:?}: {before} to {after}");
            // Its clients go to their second choice.
            if before == gone {
                assert_eq!(after, order(&all, Some(mac))[1]);
                moved += 1;
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn adding_a_server_moves_clients_only_to_it() {
        let (before, after) = (servers(4), servers(5));
        let new = Ipv4Addr::new(10, 0, 0, 5);
        let moved = macs().into_iter().filter(|&m| first(&before, m) != first(&after, m));
        assert!(moved.clone().all(|m| first(&after, m) == new));
        assert!(moved.count() > 0);
    }

    #[test]
    fn the_same_client_gets_the_same_order_and_no_mac_keeps_the_given_one() {
        let (servers, mac) = (servers(5), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        let ordered = order(&servers, Some(mac));
        assert_eq!(order(&servers, Some(mac)), ordered);
        let reversed: Vec<Ipv4Addr> = servers.iter().rev().copied().collect();
        assert_eq!(order(&reversed, Some(mac)), ordered, "the order given does not count");
        assert_eq!(order(&reversed, None), reversed);
        let mut sorted = ordered.clone();
        sorted.sort();
        assert_eq!(sorted, servers, "each server once");
    }

    #[test]
    fn lists_are_bounded_strict_and_named_in_refusals() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(parse("").unwrap_err().contains("server \"\" is not an IPv4 address"));
        assert_eq!(parse("10.0.0.1"), Ok(vec![a("10.0.0.1")]));
        assert_eq!(parse("10.0.0.2,10.0.0.1"), Ok(vec![a("10.0.0.2"), a("10.0.0.1")]));
        let sixteen: Vec<String> = (1..=16).map(|i| format!("10.0.0.{i}")).collect();
        assert_eq!(parse(&sixteen.join(",")).unwrap().len(), 16);
        for (text, says) in [
            ("10.0.0.1,10.0.0.1", "server 10.0.0.1 is named twice"),
            ("10.0.0.1,", "server \"\" is not an IPv4 address (no DNS at boot)"),
            ("10.0.0.1,nfs.lab", "server \"nfs.lab\" is not an IPv4 address"),
            ("10.0.0.1,\x1b[2J", "server \"\\x1b[2J\" is not"),
            (&",".repeat(16), "17 servers (at most 16)"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
