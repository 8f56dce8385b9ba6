//! Loopback addresses for services, as Kubernetes would give them: every
//! service gets a *cluster address* and every replica a *pod address*, all
//! in 127.0.0.0/8, which Linux routes to the loopback interface without any
//! set-up. So several services can all listen on port 5000.
//!
//! Layout within one block `B` (second octet): cluster addresses are
//! `127.B.0.1 ..= 127.B.127.254`, pod addresses `127.B.128.1 ..= 127.B.255.254`.
//! The block defaults to 10; `BODYWORK_LOOPBACK_BLOCK` changes it, so two
//! homes (e.g. parallel tests) never hand out the same address. Addresses
//! on which any socket of the machine is bound count as used too (see
//! `ServiceManager::taken_addresses`), so a squatter's is never handed out.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Which half of the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cluster,
    Pod,
}

pub const DEFAULT_BLOCK: u8 = 10;

/// The block from the environment (1..=254), else the default.
pub fn block_from_env() -> u8 {
    std::env::var("BODYWORK_LOOPBACK_BLOCK")
        .ok()
        .and_then(|v| v.trim().parse::<u8>().ok())
        .filter(|b| (1..=254).contains(b))
        .unwrap_or(DEFAULT_BLOCK)
}

/// The first free address of `kind` in `block`, skipping `used`.
pub fn allocate(block: u8, kind: Kind, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let thirds = match kind {
        Kind::Cluster => 0u8..=127,
        Kind::Pod => 128u8..=255,
    };
    thirds
        .flat_map(|c| (1u8..=254).map(move |d| Ipv4Addr::new(127, block, c, d)))
        .find(|a| !used.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_and_pod_halves_do_not_overlap() {
        let none = HashSet::new();
        assert_eq!(
            allocate(10, Kind::Cluster, &none),
            Some(Ipv4Addr::new(127, 10, 0, 1))
        );
        assert_eq!(
            allocate(10, Kind::Pod, &none),
            Some(Ipv4Addr::new(127, 10, 128, 1))
        );
    }

    #[test]
    fn used_addresses_are_skipped() {
        let used: HashSet<_> = (1..=254).map(|d| Ipv4Addr::new(127, 3, 128, d)).collect();
        assert_eq!(
            allocate(3, Kind::Pod, &used),
            Some(Ipv4Addr::new(127, 3, 129, 1))
        );
    }

    #[test]
    fn a_full_half_is_none() {
        let used: HashSet<_> = (0..=127u8)
            .flat_map(|c| (1..=254u8).map(move |d| Ipv4Addr::new(127, 7, c, d)))
            .collect();
        assert_eq!(allocate(7, Kind::Cluster, &used), None);
    }
}
