//! Who holds a loopback address: the sockets of this machine as Linux lists
//! them in `/proc/net/{tcp,tcp6,udp,udp6}`, and the processes owning them
//! (`/proc/PID/fd/*` links `socket:[INODE]`).
//!
//! Used so that a replica is ready only when the sockets taking
//! connections to its pod address and port are its own process tree's
//! (never a squatter's), so that an occupied address is never handed out,
//! and so that a port taken by someone else is an error naming the holder.
//!
//! Owns: reading those tables (the `procfs` crate parses them and
//! `/proc/PID/stat`), the ownership decision
//! (pure, tested here), and the `/proc` walks that feed it. Must not:
//! decide what to do about a squatter (the supervisor and the rollout do).

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `st` of a listening TCP socket.
pub const LISTEN: u8 = 0x0A;

/// One line of `/proc/net/tcp` (or tcp6, udp, udp6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub local: SocketAddr,
    pub state: u8,
    pub uid: u32,
    pub inode: u64,
}

/// The entries of one table (`/proc/net/tcp`, tcp6, udp or udp6 as
/// `text`), as procfs parses it. `udp` for a UDP table.
fn parse_table(text: impl std::io::BufRead, udp: bool) -> procfs::ProcResult<Vec<Entry>> {
    use procfs::FromBufReadSI;
    use procfs::net::{TcpNetEntries, UdpNetEntries};
    let info = procfs::current_system_info();
    // The TCP and UDP entries are two types with the same fields.
    macro_rules! entries {
        ($table:ty) => {
            <$table>::from_buf_read(text, info)?
                .0
                .into_iter()
                .map(|e| Entry {
                    local: e.local_address,
                    state: e.state.to_u8(),
                    uid: e.uid,
                    inode: e.inode,
                })
                .collect()
        };
    }
    Ok(if udp {
        entries!(UdpNetEntries)
    } else {
        entries!(TcpNetEntries)
    })
}

/// Would a socket listening on `local` take connections to `target`? Its
/// own address, the IPv4 wildcard, the IPv4-mapped form of `target`, and
/// the IPv6 wildcard when `v6_wildcard_takes_ipv4` (it does unless
/// `IPV6_V6ONLY`, which `/proc` does not show: see [`decide_here`]).
pub fn takes_connections_to(
    local: SocketAddr,
    target: SocketAddrV4,
    v6_wildcard_takes_ipv4: bool,
) -> bool {
    local.port() == target.port()
        && match local.ip() {
            IpAddr::V4(ip) => ip == *target.ip() || ip.is_unspecified(),
            IpAddr::V6(ip) if ip.is_unspecified() => v6_wildcard_takes_ipv4,
            IpAddr::V6(ip) => ip.to_ipv4_mapped() == Some(*target.ip()),
        }
}

/// Whose are the listening sockets that take connections to an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing listens there.
    NotListening,
    /// Something listens there, and every such socket is the tree's.
    Ours,
    /// This listening socket is not the tree's.
    Foreign(Entry),
}

/// The decision for `target`, given every socket (`entries`, any state)
/// and the inodes of the sockets the process tree holds. With several
/// sockets on one address and port (`SO_REUSEPORT`), or a wildcard one
/// beside an exact one, every one of them must be the tree's. Sockets on
/// the IPv6 wildcard count only when `v6_wildcard_takes_ipv4`.
pub fn decide(
    entries: &[Entry],
    target: SocketAddrV4,
    tree_inodes: &HashSet<u64>,
    v6_wildcard_takes_ipv4: bool,
) -> Decision {
    let mut listening = entries
        .iter()
        .filter(|e| {
            e.state == LISTEN && takes_connections_to(e.local, target, v6_wildcard_takes_ipv4)
        })
        .peekable();
    if listening.peek().is_none() {
        return Decision::NotListening;
    }
    match listening.find(|e| !tree_inodes.contains(&e.inode)) {
        Some(foreign) => Decision::Foreign(*foreign),
        None => Decision::Ours,
    }
}

/// The process tree of `root`: itself, the members of the process group it
/// leads, and every descendant of any of them (through parent links), from
/// `(pid, ppid, pgrp)` of every process.
pub fn tree(processes: &[(u32, u32, u32)], root: u32) -> HashSet<u32> {
    let mut members: Vec<u32> = processes
        .iter()
        .filter(|(pid, _, pgrp)| *pid == root || *pgrp == root)
        .map(|(pid, _, _)| *pid)
        .collect();
    members.push(root);
    let descendants = bodywork_stage::process::descendants(&members, processes);
    members.into_iter().chain(descendants).collect()
}

/// Who holds a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// A process this one can see: its pid and command line.
    Process { pid: u32, command: String },
    /// No process this one can see holds it (another user's, or in
    /// another pid namespace): the socket's owner uid.
    Unseen { uid: u32, other_user: bool },
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Process { pid, command } if command.is_empty() => write!(f, "pid {pid}"),
            Holder::Process { pid, command } => write!(f, "pid {pid} ({command})"),
            Holder::Unseen {
                uid,
                other_user: true,
            } => write!(
                f,
                "a process of another user (uid {uid}) whose pid bodywork cannot see"
            ),
            Holder::Unseen { uid, .. } => {
                write!(f, "a process (uid {uid}) whose pid bodywork cannot see")
            }
        }
    }
}

/// A socket someone else listens on, and who.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub listening_on: SocketAddr,
    pub inode: u64,
    pub holder: Holder,
}

impl Held {
    /// `ADDRESS is held by HOLDER[ listening on LISTENER]`.
    pub fn describe(&self, what: &str, target: SocketAddrV4) -> String {
        let on = if self.listening_on == SocketAddr::V4(target) {
            String::new()
        } else {
            format!(" listening on {}", self.listening_on)
        };
        format!("{what} {target} is held by {}{on}", self.holder)
    }
}

/// The ownership of `target` with regard to the process tree of `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    NotListening,
    /// Every socket listening for it is the tree's: the inodes of the
    /// listening sockets on its port found harmless (the tree's, and
    /// IPv6-only wildcard ones, which take none of its connections), for
    /// [`only_known_listen`].
    Ours {
        cleared: Vec<u64>,
    },
    Foreign(Held),
}

/// The last read of something costly, and when it was made.
type Cache<T> = Mutex<Option<(Instant, Arc<T>)>>;

/// What `read` gives, or what it gave less than `max_age` ago (checks of
/// many replicas at once may share one read).
fn cached<T>(
    cache: &Cache<T>,
    max_age: Duration,
    read: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<Arc<T>> {
    if let Ok(last) = cache.lock()
        && let Some((at, value)) = last.as_ref()
        && at.elapsed() < max_age
    {
        return Ok(value.clone());
    }
    let value = Arc::new(read()?);
    if let Ok(mut last) = cache.lock() {
        *last = Some((Instant::now(), value.clone()));
    }
    Ok(value)
}

/// Every TCP socket of this network namespace (`tcp` and `tcp6`), as
/// read at most `max_age` ago (reading them costs a few ms of kernel time
/// on a large machine, however few sockets there are).
pub fn tcp_sockets(max_age: Duration) -> std::io::Result<Arc<Vec<Entry>>> {
    static LAST: Cache<Vec<Entry>> = Mutex::new(None);
    cached(&LAST, max_age, || read_tables(&["tcp", "tcp6"]))
}

/// Read `/proc/net/NAME` for each name; the IPv4 table must be there, an
/// IPv6 one may not be (IPv6 disabled).
fn read_tables(names: &[&str]) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for name in names {
        match std::fs::File::open(format!("/proc/net/{name}")) {
            Ok(file) => out.extend(
                parse_table(std::io::BufReader::new(file), name.starts_with("udp"))
                    .map_err(std::io::Error::other)?,
            ),
            Err(_) if name.ends_with('6') => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// IPv4 addresses (or IPv4-mapped ones) on which any TCP or UDP socket is
/// bound, in any state: addresses not to hand out. Empty when `/proc`
/// cannot be read.
pub fn bound_ipv4_addresses() -> HashSet<Ipv4Addr> {
    read_tables(&["tcp", "tcp6", "udp", "udp6"])
        .unwrap_or_default()
        .iter()
        .filter_map(|e| match e.local.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(ip) => ip.to_ipv4_mapped(),
        })
        .filter(|ip| !ip.is_unspecified())
        .collect()
}

/// `(pid, ppid, pgrp)` of every process this one can see, as read at most
/// `max_age` ago (a few ms for a few hundred processes).
fn processes(max_age: Duration) -> Arc<Vec<(u32, u32, u32)>> {
    static LAST: Cache<Vec<(u32, u32, u32)>> = Mutex::new(None);
    cached(&LAST, max_age, || {
        Ok(bodywork_stage::process::process_table())
    })
    .unwrap_or_default()
}

/// Every process this one can see, now.
fn processes_now() -> impl Iterator<Item = procfs::process::Process> {
    procfs::process::all_processes()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
}

/// The inodes of the sockets `process` holds (none when its descriptors
/// cannot be read).
fn sockets_held(process: &procfs::process::Process) -> impl Iterator<Item = u64> + use<> {
    process
        .fd()
        .into_iter()
        .flatten()
        .filter_map(|fd| match fd.ok()?.target {
            procfs::process::FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
}

/// The inodes of the sockets `pid` holds.
fn socket_inodes(pid: u32) -> impl Iterator<Item = u64> {
    i32::try_from(pid)
        .ok()
        .and_then(|pid| procfs::process::Process::new(pid).ok())
        .into_iter()
        .flat_map(|process| sockets_held(&process))
}

/// A process's command line (its `comm` when that is empty), the program
/// by its file name only, shortened. The command line is read as bytes:
/// procfs's reading wants UTF-8 and drops empty arguments.
fn command_of(process: &procfs::process::Process) -> String {
    let pid = process.pid();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut command = command_line(&cmdline);
    if command.is_empty() {
        command = process.stat().map(|s| s.comm).unwrap_or_default();
    }
    const MAX: usize = 120;
    if command.chars().count() > MAX {
        command = command.chars().take(MAX).collect::<String>() + "...";
    }
    command
}

/// The text of `/proc/PID/cmdline` (NUL-separated), the program by its
/// file name: `/usr/bin/python3 squat.py` is `python3 squat.py`.
pub fn command_line(raw: &[u8]) -> String {
    let mut args = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(String::from_utf8_lossy);
    let Some(program) = args.next() else {
        return String::new();
    };
    let program = program.rsplit('/').next().unwrap_or_default().to_string();
    std::iter::once(program)
        .chain(args.map(|a| a.into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who holds socket `entry`: the first visible process with it open.
fn holder(entry: &Entry) -> Holder {
    let found = processes_now().find(|p| sockets_held(p).any(|i| i == entry.inode));
    match found.and_then(|p| Some((u32::try_from(p.pid()).ok()?, p))) {
        Some((pid, process)) => Holder::Process {
            pid,
            command: command_of(&process),
        },
        None => {
            let me = procfs::process::Process::myself()
                .and_then(|p| p.uid())
                .ok();
            Holder::Unseen {
                uid: entry.uid,
                other_user: me != Some(entry.uid),
            }
        }
    }
}

/// Where [`v6_wildcards_are_v6only`] tries a bind: an IPv4 address outside
/// every pod and cluster address block (`127.B.128.N`, `127.B.0.N`).
const PROBE_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 254, 254, 254);

/// Whether the IPv6 wildcard sockets on `port` take no IPv4 connections
/// (all `IPV6_V6ONLY`): an IPv4 address nobody uses can then be bound on
/// that port, which a dual-stack one refuses (`EADDRINUSE`). The probe
/// socket is bound without `SO_REUSEADDR`, never listens, and is closed at
/// once. `false` when in doubt.
pub fn v6_wildcards_are_v6only(port: u16) -> bool {
    let Ok(probe) = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None) else {
        return false;
    };
    probe
        .bind(&SocketAddr::from((PROBE_ADDRESS, port)).into())
        .is_ok()
}

/// [`decide`] on this machine: a foreign socket on the IPv6 wildcard is
/// tried ([`v6_wildcards_are_v6only`]) before it counts, so an IPv6-only
/// listener (as nginx's `listen [::]:80` makes) holds no pod address.
fn decide_here(entries: &[Entry], target: SocketAddrV4, tree_inodes: &HashSet<u64>) -> Decision {
    match decide(entries, target, tree_inodes, true) {
        Decision::Foreign(e)
            if e.local.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                && v6_wildcards_are_v6only(target.port()) =>
        {
            decide(entries, target, tree_inodes, false)
        }
        decision => decision,
    }
}

/// The TCP sockets listening on one port, as [`Listening::read`] found them.
struct Listening {
    entries: Arc<Vec<Entry>>,
    /// From `sock_diag`, which says which IPv6 sockets are IPv6-only:
    /// those are left out. Else every socket of the `/proc` tables.
    exact: bool,
}

impl Listening {
    /// The sockets listening for `target` from the kernel's `sock_diag`
    /// interface, now (tens of microseconds); where the kernel has none,
    /// every socket of the `/proc` tables as read at most `max_age` ago (a
    /// few ms, or tens on a machine with many sockets).
    fn read(target: SocketAddrV4, max_age: Duration) -> std::io::Result<Listening> {
        match crate::sock_diag::listening_on(target.port()) {
            Ok(listeners) => Ok(Listening {
                entries: Arc::new(
                    listeners
                        .iter()
                        .filter(|l| takes_connections_to(l.local, target, !l.v6only))
                        .map(|l| Entry {
                            local: l.local,
                            state: LISTEN,
                            uid: l.uid,
                            inode: l.inode,
                        })
                        .collect(),
                ),
                exact: true,
            }),
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    tracing::warn!(target: "services", "the kernel's sock_diag cannot be used ({e}): the sockets of pod addresses are read from /proc, slower");
                });
                Ok(Listening {
                    entries: tcp_sockets(max_age)?,
                    exact: false,
                })
            }
        }
    }

    /// [`decide`] (an IPv6-only wildcard socket from `/proc` tried by
    /// [`decide_here`]).
    fn decide(&self, target: SocketAddrV4, tree_inodes: &HashSet<u64>) -> Decision {
        if self.exact {
            decide(&self.entries, target, tree_inodes, true)
        } else {
            decide_here(&self.entries, target, tree_inodes)
        }
    }

    /// The inodes of the sockets listening for `target`, IPv6 wildcard
    /// ones included (from `/proc`, whether IPv6-only or not).
    fn inodes(&self, target: SocketAddrV4) -> impl Iterator<Item = u64> + '_ {
        self.entries
            .iter()
            .filter(move |e| e.state == LISTEN && takes_connections_to(e.local, target, true))
            .map(|e| e.inode)
    }
}

/// Whose are the sockets listening for `target`: the tree of `root` (see
/// [`tree`]) only, or someone else too (named), from the sockets listening
/// on its port (see [`Listening::read`]) and the process table as read at
/// most `max_age` ago. Blocking (reads `/proc`).
pub fn ownership(target: SocketAddrV4, root: u32, max_age: Duration) -> std::io::Result<Ownership> {
    let listening = Listening::read(target, max_age)?;
    // Nothing to look up when nothing listens there.
    if listening.decide(target, &HashSet::new()) == Decision::NotListening {
        return Ok(Ownership::NotListening);
    }
    let tree_inodes: HashSet<u64> = tree(&processes(max_age), root)
        .into_iter()
        .flat_map(socket_inodes)
        .collect();
    Ok(match listening.decide(target, &tree_inodes) {
        Decision::NotListening => Ownership::NotListening,
        Decision::Ours => Ownership::Ours {
            // Those that would take its connections are the tree's; any
            // other on the IPv6 wildcard is IPv6-only.
            cleared: listening.inodes(target).collect(),
        },
        Decision::Foreign(entry) => Ownership::Foreign(Held {
            listening_on: entry.local,
            inode: entry.inode,
            holder: holder(&entry),
        }),
    })
}

/// Whether every socket listening for `target` now is one of `known` (for
/// a socket found harmless by [`ownership`] and still open, that check
/// need not be made again): tens of microseconds where the kernel has
/// `sock_diag` (see [`Listening::read`]). `false` when the sockets cannot
/// be read.
pub fn only_known_listen(target: SocketAddrV4, known: &HashSet<u64>) -> bool {
    Listening::read(target, Duration::ZERO)
        .is_ok_and(|listening| listening.inodes(target).all(|i| known.contains(&i)))
}

/// Who listens for `target`, if anyone does (for a bind that failed).
pub fn listener_of(target: SocketAddrV4) -> Option<Held> {
    match Listening::read(target, Duration::ZERO)
        .ok()?
        .decide(target, &HashSet::new())
    {
        Decision::Foreign(entry) => Some(Held {
            listening_on: entry.local,
            inode: entry.inode,
            holder: holder(&entry),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1661 1 0000000079f13b1e 100 0 0 10 0
   1: 01800A7F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000079f13b1e 100 0 0 10 0
   2: 0100007F:A80D 0100007F:DAEC 06 00000000:00000000 03:00001462 00000000     0        0 0 3 0000000033a68472
";

    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 777 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF000002800A7F:1388 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 778 1 0000000000000000 100 0 0 10 0
   2: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 779 1 0000000000000000 100 0 0 10 0
";

    fn v4(a: &str) -> SocketAddrV4 {
        a.parse().expect("address")
    }

    fn listen(addr: &str, inode: u64) -> Entry {
        Entry {
            local: addr.parse().expect("address"),
            state: LISTEN,
            uid: 1000,
            inode,
        }
    }

    #[test]
    fn ipv4_lines_are_parsed_in_host_byte_order_and_the_header_skipped() {
        let entries = parse_table(TCP.as_bytes(), false).expect("parses");
        assert_eq!(
            entries,
            vec![
                listen("0.0.0.0:2024", 1661).with_uid(0),
                listen("127.10.128.1:5000", 4242),
                Entry {
                    local: "127.0.0.1:43021".parse().unwrap(),
                    state: 0x06,
                    uid: 0,
                    inode: 0,
                },
            ]
        );
    }

    impl Entry {
        fn with_uid(mut self, uid: u32) -> Entry {
            self.uid = uid;
            self
        }
    }

    #[test]
    fn ipv6_lines_give_the_wildcard_mapped_and_loopback_addresses() {
        let entries = parse_table(TCP6.as_bytes(), false).expect("parses");
        let locals: Vec<String> = entries.iter().map(|e| e.local.to_string()).collect();
        assert_eq!(
            locals,
            ["[::]:5000", "[::ffff:127.10.128.2]:5000", "[::1]:22"]
        );
        assert_eq!(entries[0].uid, 1001);
        assert_eq!(entries[1].inode, 778);
    }

    #[test]
    fn a_table_that_does_not_parse_is_an_error() {
        assert!(parse_table("header\n 0: ZZ:1 00:0 0A 0 0 0 0 0 1\n".as_bytes(), false).is_err());
        assert_eq!(parse_table("header\n".as_bytes(), true).ok(), Some(vec![]));
    }

    #[test]
    fn exact_wildcard_and_mapped_listeners_take_connections_to_a_pod_address() {
        let target = v4("127.10.128.2:5000");
        for local in [
            "127.10.128.2:5000",
            "0.0.0.0:5000",
            "[::]:5000",
            "[::ffff:127.10.128.2]:5000",
        ] {
            assert!(
                takes_connections_to(local.parse().unwrap(), target, true),
                "{local}"
            );
        }
        // An IPv6-only wildcard takes none.
        assert!(!takes_connections_to(
            "[::]:5000".parse().unwrap(),
            target,
            false
        ));
        for local in [
            "127.10.128.3:5000",
            "127.10.128.2:5001",
            "0.0.0.0:5001",
            "[::1]:5000",
            "[::ffff:127.10.128.3]:5000",
        ] {
            assert!(
                !takes_connections_to(local.parse().unwrap(), target, true),
                "{local}"
            );
        }
    }

    #[test]
    fn a_replica_owning_its_only_listener_is_ours() {
        let target = v4("127.10.128.1:5000");
        let entries = [
            listen("127.10.128.1:5000", 10),
            listen("127.10.128.2:5000", 11),
        ];
        assert_eq!(
            decide(&entries, target, &HashSet::from([10]), true),
            Decision::Ours
        );
    }

    #[test]
    fn nothing_listening_is_not_ready_even_with_connections_on_the_address() {
        let target = v4("127.10.128.1:5000");
        let mut closed = listen("127.10.128.1:5000", 0);
        closed.state = 0x06;
        assert_eq!(
            decide(&[closed], target, &HashSet::new(), true),
            Decision::NotListening
        );
    }

    #[test]
    fn a_squatter_on_the_pod_address_is_foreign() {
        let target = v4("127.10.128.1:5000");
        let squatter = listen("127.10.128.1:5000", 66);
        assert_eq!(
            decide(&[squatter], target, &HashSet::from([10]), true),
            Decision::Foreign(squatter)
        );
    }

    #[test]
    fn a_wildcard_squatter_beside_the_replicas_own_listener_is_foreign() {
        let target = v4("127.10.128.1:5000");
        for wildcard in ["0.0.0.0:5000", "[::]:5000"] {
            let squatter = listen(wildcard, 66);
            let entries = [listen("127.10.128.1:5000", 10), squatter];
            assert_eq!(
                decide(&entries, target, &HashSet::from([10]), true),
                Decision::Foreign(squatter)
            );
        }
    }

    #[test]
    fn an_ipv6_only_wildcard_beside_the_replicas_own_listener_is_not_counted() {
        let target = v4("127.10.128.1:5000");
        let v6only = listen("[::]:5000", 66);
        let entries = [listen("127.10.128.1:5000", 10), v6only];
        assert_eq!(
            decide(&entries, target, &HashSet::from([10]), false),
            Decision::Ours
        );
        assert_eq!(
            decide(&[v6only], target, &HashSet::new(), false),
            Decision::NotListening
        );
    }

    /// A listener on `[::]:0` with `IPV6_V6ONLY` as given; its port.
    fn v6_wildcard_listener(v6only: bool) -> (socket2::Socket, u16) {
        let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        s.set_only_v6(v6only).unwrap();
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)).into())
            .unwrap();
        s.listen(1).unwrap();
        let port = s.local_addr().unwrap().as_socket().unwrap().port();
        (s, port)
    }

    #[test]
    fn the_probe_tells_an_ipv6_only_wildcard_from_a_dual_stack_one() {
        if std::fs::read_to_string("/proc/net/tcp6").is_err() {
            return; // No IPv6 on this machine: nothing listens on [::].
        }
        let (_only, port) = v6_wildcard_listener(true);
        assert!(v6_wildcards_are_v6only(port));
        let (_dual, port) = v6_wildcard_listener(false);
        assert!(!v6_wildcards_are_v6only(port));
        // And on this machine's tables: the dual-stack one holds the pod
        // address, the IPv6-only one does not.
        let target = SocketAddrV4::new(Ipv4Addr::new(127, 10, 128, 1), port);
        let entries = tcp_sockets(Duration::ZERO).unwrap();
        assert!(matches!(
            decide_here(&entries, target, &HashSet::new()),
            Decision::Foreign(_)
        ));
        let (_only, port) = v6_wildcard_listener(true);
        let target = SocketAddrV4::new(Ipv4Addr::new(127, 10, 128, 1), port);
        let entries = tcp_sockets(Duration::ZERO).unwrap();
        assert_eq!(
            decide_here(&entries, target, &HashSet::new()),
            Decision::NotListening
        );
    }

    #[test]
    fn only_known_listen_sees_a_reuseport_socket_joining_and_ignores_ipv6_only_ones() {
        use socket2::{Domain, Socket, Type};
        let listen = |domain, address: SocketAddr, v6only: bool| {
            let s = Socket::new(domain, Type::STREAM, None).unwrap();
            s.set_reuse_port(true).unwrap();
            if domain == Domain::IPV6 {
                s.set_only_v6(v6only).unwrap();
            }
            s.bind(&address.into()).unwrap();
            s.listen(1).unwrap();
            s
        };
        let pod = Ipv4Addr::new(127, 0, 0, 1);
        let replica = listen(Domain::IPV4, SocketAddr::from((pod, 0)), false);
        let target = match replica.local_addr().unwrap().as_socket() {
            Some(SocketAddr::V4(addr)) => addr,
            other => panic!("{other:?}"),
        };
        let me = std::process::id();
        let Ownership::Ours { cleared } = ownership(target, me, Duration::ZERO).unwrap() else {
            panic!("not ours");
        };
        let known: HashSet<u64> = cleared.into_iter().collect();
        assert!(only_known_listen(target, &known));
        // A socket on another address of the port takes none of its connections.
        let _beside = listen(
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), target.port())),
            false,
        );
        assert!(only_known_listen(target, &known));
        if std::fs::read_to_string("/proc/net/tcp6").is_ok() {
            let _v6only = listen(
                Domain::IPV6,
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, target.port())),
                true,
            );
            assert!(only_known_listen(target, &known));
        }
        // One more on its address and port (SO_REUSEPORT): unknown.
        let joined = listen(Domain::IPV4, SocketAddr::V4(target), false);
        assert!(!only_known_listen(target, &known));
        drop(joined);
        assert!(only_known_listen(target, &known));
        // Nothing listening: nothing unknown (the connect will fail).
        drop(replica);
        assert!(only_known_listen(target, &HashSet::new()));
    }

    #[test]
    fn a_second_reuseport_listener_on_the_same_address_must_be_ours_too() {
        let target = v4("127.10.128.1:5000");
        let other = listen("127.10.128.1:5000", 11);
        let entries = [listen("127.10.128.1:5000", 10), other];
        assert_eq!(
            decide(&entries, target, &HashSet::from([10]), true),
            Decision::Foreign(other)
        );
        // Two workers of the replica, both with their own socket: ours.
        assert_eq!(
            decide(&entries, target, &HashSet::from([10, 11]), true),
            Decision::Ours
        );
    }

    #[test]
    fn a_replica_listening_on_the_wildcard_itself_is_ours() {
        let target = v4("127.10.128.1:5000");
        let entries = [listen("0.0.0.0:5000", 10)];
        assert_eq!(
            decide(&entries, target, &HashSet::from([10]), true),
            Decision::Ours
        );
    }

    #[test]
    fn the_tree_holds_the_root_its_group_and_every_descendant() {
        // 100 is a supervisor (group 100); 101 its child; 102 a grandchild
        // that left the group; 103 in the group though its parent is init;
        // 200 and 201 unrelated; 202 a child of an unrelated process.
        let procs = [
            (1, 0, 1),
            (100, 50, 100),
            (101, 100, 100),
            (102, 101, 102),
            (103, 1, 100),
            (104, 103, 104),
            (200, 1, 200),
            (201, 200, 200),
            (202, 1, 202),
        ];
        let t = tree(&procs, 100);
        let mut members: Vec<u32> = t.into_iter().collect();
        members.sort();
        assert_eq!(members, [100, 101, 102, 103, 104]);
        // A root that is already gone still counts its group.
        let t = tree(&[(101, 1, 100)], 100);
        assert!(t.contains(&101));
    }

    #[test]
    fn a_command_line_names_the_program_by_its_file_name() {
        assert_eq!(
            command_line(b"/usr/bin/python3\0/tmp/squat.py\0-v\0"),
            "python3 /tmp/squat.py -v"
        );
        assert_eq!(command_line(b"nc\0-l\0"), "nc -l");
        assert_eq!(command_line(b""), "");
    }

    #[test]
    fn a_cached_read_is_shared_within_its_age_and_made_again_with_none() {
        let cache: Cache<u32> = Mutex::new(None);
        let mut reads = 0;
        let mut read = |max_age| {
            *cached(&cache, max_age, || {
                reads += 1;
                Ok(reads)
            })
            .expect("read")
        };
        assert_eq!(read(Duration::from_secs(60)), 1);
        assert_eq!(read(Duration::from_secs(60)), 1);
        assert_eq!(read(Duration::ZERO), 2);
        assert_eq!(read(Duration::from_secs(60)), 2);
    }

    #[test]
    fn a_holder_is_named_by_pid_and_command_or_said_to_be_unseen() {
        let target = v4("127.10.128.1:5000");
        let held = |holder, on: &str| Held {
            listening_on: on.parse().unwrap(),
            inode: 1,
            holder,
        };
        let squatter = Holder::Process {
            pid: 1234,
            command: "python3 squat.py".into(),
        };
        assert_eq!(
            held(squatter.clone(), "127.10.128.1:5000").describe("pod address", target),
            "pod address 127.10.128.1:5000 is held by pid 1234 (python3 squat.py)"
        );
        assert_eq!(
            held(squatter, "0.0.0.0:5000").describe("pod address", target),
            "pod address 127.10.128.1:5000 is held by pid 1234 (python3 squat.py) listening on 0.0.0.0:5000"
        );
        let other = Holder::Unseen {
            uid: 1001,
            other_user: true,
        };
        assert_eq!(
            held(other, "127.10.128.1:5000").describe("pod address", target),
            "pod address 127.10.128.1:5000 is held by a process of another user (uid 1001) whose pid bodywork cannot see"
        );
    }

    /// A process group started here, killed whole when dropped (and its
    /// standard input closed, for children that left the group).
    struct Group(std::process::Child);

    impl Group {
        fn start(program: &str, args: &[&str]) -> Group {
            use std::os::unix::process::CommandExt;
            let child = std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .process_group(0)
                .spawn()
                .expect("spawn");
            Group(child)
        }
    }

    impl Drop for Group {
        fn drop(&mut self) {
            drop(self.0.stdin.take());
            bodywork_stage::process::kill_group(self.0.id(), nix::sys::signal::Signal::SIGKILL);
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_listener_of_a_descendant_is_the_trees_and_foreign_to_anyone_else() {
        use std::io::BufRead;
        // A supervisor (sh, which stays the parent) whose child (python3,
        // in a process group of its own, so found as a descendant only)
        // holds the listening socket until its standard input closes.
        let listen = "import os, socket, sys\n\
                      os.setpgrp()\n\
                      s = socket.socket()\n\
                      s.bind(('127.0.0.1', 0))\n\
                      s.listen()\n\
                      print(s.getsockname()[1], flush=True)\n\
                      sys.stdin.read()";
        let mut supervisor = Group::start("sh", &["-c", "python3 -c \"$0\"; :", listen]);
        let mut line = String::new();
        let stdout = supervisor.0.stdout.take().expect("stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the port");
        let port: u16 = line.trim().parse().expect("a port");
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        assert!(matches!(
            ownership(target, supervisor.0.id(), Duration::ZERO).expect("proc"),
            Ownership::Ours { cleared } if cleared.len() == 1
        ));
        // Seen from an unrelated process's tree: foreign, its holder named.
        let other = Group::start("sleep", &["60"]);
        match ownership(target, other.0.id(), Duration::ZERO).expect("proc") {
            Ownership::Foreign(Held {
                holder: Holder::Process { pid, command },
                ..
            }) => {
                assert_ne!(pid, supervisor.0.id());
                assert!(command.starts_with("python3 -c"), "{command}");
            }
            found => panic!("{found:?}"),
        }
    }

    #[test]
    fn this_process_owns_its_listener_and_not_a_childs() {
        // On the real /proc: a listener of this process is its tree's; seen
        // from an unrelated root (pid 1's tree does not hold this process's
        // sockets unless it is its ancestor, so use a pid that does not exist).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let SocketAddr::V4(addr) = listener.local_addr().expect("addr") else {
            panic!("IPv4");
        };
        let me = std::process::id();
        let inode = tcp_sockets(Duration::ZERO)
            .expect("proc")
            .iter()
            .find(|e| e.local == SocketAddr::V4(addr))
            .expect("listed")
            .inode;
        assert_eq!(
            ownership(addr, me, Duration::ZERO).expect("proc"),
            Ownership::Ours {
                cleared: vec![inode]
            }
        );
        match ownership(addr, u32::MAX, Duration::ZERO).expect("proc") {
            Ownership::Foreign(held) => {
                assert_eq!(held.listening_on, SocketAddr::V4(addr));
                assert!(
                    matches!(held.holder, Holder::Process { pid, .. } if pid == me),
                    "{held:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        let udp = std::net::UdpSocket::bind("127.77.0.1:0").expect("bind udp");
        let bound = bound_ipv4_addresses();
        assert!(bound.contains(addr.ip()));
        assert!(bound.contains(&Ipv4Addr::new(127, 77, 0, 1)));
        assert!(!bound.contains(&Ipv4Addr::UNSPECIFIED));
        drop(udp);
        drop(listener);
        assert_eq!(
            ownership(addr, me, Duration::ZERO).expect("proc"),
            Ownership::NotListening
        );
    }
}
