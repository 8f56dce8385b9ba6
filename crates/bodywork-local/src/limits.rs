//! How many connections the gateway and the cluster addresses may serve at
//! once, derived from the daemon's file-descriptor limit (`RLIMIT_NOFILE`),
//! so that a flood of connections (idle ones cost a descriptor each, and a
//! proxied one two: the client's and the replica's) can never take the
//! descriptors the daemon needs for its own files: the state database,
//! logs, the pipes of stage processes, listening sockets, the CLI's socket.
//!
//! Pure arithmetic plus one `getrlimit`; the limits are enforced by
//! `bodywork_gateway::ConnectionLimit`.

/// The connection limits of one daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// The soft `RLIMIT_NOFILE` they were derived from.
    pub nofile: u64,
    /// Client connections the gateway serves at once.
    pub gateway: usize,
    /// Connections all cluster addresses together serve at once.
    pub cluster: usize,
}

/// Descriptors a proxied connection may hold: the client's and the replica's.
const PER_CONNECTION: u64 = 2;
/// Descriptors kept for the daemon's own use: a quarter of the limit, at
/// least 128 and at most 4096.
const RESERVE_MIN: u64 = 128;
const RESERVE_MAX: u64 = 4096;
/// Each side gets at least this many connections, however low the limit.
const MIN_CONNECTIONS: usize = 8;

impl ConnectionBudget {
    /// The budget for this process's soft `RLIMIT_NOFILE` (1024 when it
    /// cannot be read).
    pub fn of_this_process() -> ConnectionBudget {
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map(|(soft, _hard)| soft)
            .unwrap_or(1024);
        ConnectionBudget::for_limit(nofile)
    }

    /// The budget for a limit of `nofile` descriptors: a reserve for the
    /// daemon's own files, then half of the rest to the gateway and half to
    /// the cluster addresses, two descriptors a connection.
    pub fn for_limit(nofile: u64) -> ConnectionBudget {
        // RLIM_INFINITY and other huge limits: the kernel caps open files
        // at fs.nr_open (2^20 by default) anyway.
        let nofile = nofile.min(1 << 20);
        let reserve = (nofile / 4).clamp(RESERVE_MIN, RESERVE_MAX);
        let each = nofile.saturating_sub(reserve) / PER_CONNECTION / 2;
        let each = usize::try_from(each)
            .unwrap_or(usize::MAX)
            .max(MIN_CONNECTIONS);
        ConnectionBudget {
            nofile,
            gateway: each,
            cluster: each,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_keeps_room_for_its_own_files() {
        let at = |n| {
            let b = ConnectionBudget::for_limit(n);
            (b.gateway, b.cluster)
        };
        // The usual soft limit: 256 kept, 768 for 384 connections.
        assert_eq!(at(1024), (192, 192));
        assert_eq!(at(300), (43, 43));
        assert_eq!(at(65536), (15360, 15360));
        // However low the limit, a few connections are served.
        assert_eq!(at(64), (8, 8));
        assert_eq!(at(u64::MAX), at(1 << 20));
        for n in [256, 1024, 4096, 65536, 1 << 20] {
            let b = ConnectionBudget::for_limit(n);
            let worst = (b.gateway + b.cluster) as u64 * PER_CONNECTION;
            assert!(worst + RESERVE_MIN <= n, "{n}: {b:?}");
        }
    }
}
