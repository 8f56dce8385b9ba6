//! The TCP sockets listening on one port, as the kernel's `sock_diag`
//! netlink interface lists them (`NETLINK_SOCK_DIAG`, what `ss -ltn`
//! reads): one request per address family, answered in tens of
//! microseconds, where reading `/proc/net/tcp` and `tcp6` costs
//! milliseconds on a busy machine.
//!
//! Owns: building the dump request and reading its answer. Must not:
//! judge whose a socket is (`sockets` does).

use std::io;
use std::net::SocketAddr;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{
    ExtensionFlags, InetRequest, InetResponse, SocketId, StateFlags,
};
use netlink_sys::protocols::NETLINK_SOCK_DIAG;
use nix::errno::Errno;

/// One listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The address and port it is bound to.
    pub local: SocketAddr,
    /// Its inode, as `/proc/PID/fd/N` links name it (`socket:[INODE]`).
    pub inode: u64,
    /// Its owner.
    pub uid: u32,
    /// An IPv6 socket with `IPV6_V6ONLY`, which takes no IPv4 connection
    /// even on the wildcard address (always false for IPv4).
    pub v6only: bool,
}

/// Every TCP socket of this network namespace listening on `port`, IPv4
/// and IPv6. An `Err` when the kernel has no `sock_diag` for TCP (the
/// `inet_diag` module not loaded, or netlink refused); IPv6 missing
/// (disabled) is no error.
pub fn listening_on(port: u16) -> io::Result<Vec<Listener>> {
    let socket = netlink_sys::Socket::new(NETLINK_SOCK_DIAG)?;
    let mut found = Vec::new();
    dump(&socket, AF_INET, port, &mut found)?;
    match dump(&socket, AF_INET6, port, &mut found) {
        // No handler for the family: IPv6 is not there.
        Err(e)
            if [Errno::ENOENT, Errno::EAFNOSUPPORT]
                .map(|n| Some(n as i32))
                .contains(&e.raw_os_error()) => {}
        other => other?,
    }
    Ok(found)
}

/// Enough for any message of a dump: the kernel makes each batch at most
/// 32 KiB (less its overhead), and never splits a message across batches.
const RECEIVE_BUFFER: usize = 32 * 1024;

/// The request: listening TCP sockets of `family` on `port`. The kernel
/// skips the other ports itself (`id.sport` is compared while it walks
/// the listening sockets), and only walks those with `states` = LISTEN.
fn request(family: u8, port: u16) -> Vec<u8> {
    let mut socket_id = if family == AF_INET {
        SocketId::new_v4()
    } else {
        SocketId::new_v6()
    };
    socket_id.source_port = port;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut message = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::empty(),
            states: StateFlags::LISTEN,
            socket_id,
        })
        .into(),
    );
    message.finalize();
    let mut bytes = vec![0; message.buffer_len()];
    message.serialize(&mut bytes);
    bytes
}

/// Send the request for `family` and add what answers it to `found`.
fn dump(
    socket: &netlink_sys::Socket,
    family: u8,
    port: u16,
    found: &mut Vec<Listener>,
) -> io::Result<()> {
    let kernel = netlink_sys::SocketAddr::new(0, 0);
    socket.send_to(&request(family, port), &kernel, 0)?;
    let mut buffer = vec![0u8; RECEIVE_BUFFER];
    loop {
        let size = socket.recv(&mut &mut buffer[..], 0)?;
        if size > buffer.len() {
            return Err(io::Error::other("a sock_diag message did not fit"));
        }
        if parse_batch(&buffer[..size], port, found)? {
            return Ok(());
        }
    }
}

/// Read one batch of answers into `found` (only listeners on `port`, in
/// case a kernel ignored the port filter); true once the dump is done.
fn parse_batch(mut batch: &[u8], port: u16, found: &mut Vec<Listener>) -> io::Result<bool> {
    while !batch.is_empty() {
        let message =
            NetlinkMessage::<SockDiagMessage>::deserialize(batch).map_err(io::Error::other)?;
        match message.payload {
            NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(response)) => {
                if let Some(listener) = listener(&response)
                    && listener.local.port() == port
                {
                    found.push(listener);
                }
            }
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(error) if error.code.is_some() => return Err(error.to_io()),
            _ => {}
        }
        // Messages are padded to 4 bytes.
        let length = (message.header.length as usize).next_multiple_of(4);
        if length == 0 {
            break;
        }
        batch = batch.get(length..).unwrap_or_default();
    }
    Ok(false)
}

fn listener(response: &InetResponse) -> Option<Listener> {
    let header = &response.header;
    let id = &header.socket_id;
    (header.state == netlink_packet_sock_diag::constants::TCP_LISTEN).then(|| Listener {
        local: SocketAddr::new(id.source_address, id.source_port),
        inode: u64::from(header.inode),
        uid: header.uid,
        v6only: response
            .nlas
            .iter()
            .any(|nla| matches!(nla, Nla::SkV6Only(true))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
    use std::os::unix::fs::MetadataExt;

    /// The inode of a socket of this process, from its `/proc/self/fd` link.
    fn inode_of(fd: &impl std::os::fd::AsRawFd) -> u64 {
        let info = procfs::process::Process::myself()
            .and_then(|me| me.fd_from_fd(fd.as_raw_fd()))
            .expect("fd");
        match info.target {
            procfs::process::FDTarget::Socket(inode) => inode,
            other => panic!("not a socket: {other:?}"),
        }
    }

    #[test]
    fn a_listener_of_this_process_is_listed_with_its_inode_and_uid() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        // A connection to it is no listener, and is not listed.
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let found = listening_on(port).expect("sock_diag answers");
        let me = std::fs::metadata("/proc/self").expect("proc").uid();
        assert_eq!(
            found,
            [Listener {
                local: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                inode: inode_of(&listener),
                uid: me,
                v6only: false,
            }]
        );
        drop(listener);
        assert_eq!(listening_on(port).expect("sock_diag answers"), []);
    }

    #[test]
    fn every_socket_sharing_a_port_is_listed_and_ipv6_only_ones_say_so() {
        use socket2::{Domain, Socket, Type};
        let reuse = |domain, address: SocketAddr, v6only: bool| {
            let s = Socket::new(domain, Type::STREAM, None).expect("socket");
            s.set_reuse_port(true).expect("SO_REUSEPORT");
            if domain == Domain::IPV6 {
                s.set_only_v6(v6only).expect("IPV6_V6ONLY");
            }
            s.bind(&address.into()).expect("bind");
            s.listen(1).expect("listen");
            s
        };
        let first = reuse(
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 0)),
            false,
        );
        let port = first
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet")
            .port();
        let second = reuse(
            Domain::IPV4,
            SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), port)),
            false,
        );
        let mut expected = vec![(inode_of(&first), false), (inode_of(&second), false)];
        let _v6 = std::fs::read_to_string("/proc/net/tcp6").is_ok().then(|| {
            let v6 = reuse(
                Domain::IPV6,
                SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
                true,
            );
            expected.push((inode_of(&v6), true));
            v6
        });
        let mut found: Vec<(u64, bool)> = listening_on(port)
            .expect("sock_diag answers")
            .iter()
            .map(|l| (l.inode, l.v6only))
            .collect();
        found.sort();
        expected.sort();
        assert_eq!(found, expected);
    }

    #[test]
    fn a_batch_is_read_message_by_message_up_to_done() {
        // An error answer ends the dump with that error.
        let mut error = NetlinkMessage::<SockDiagMessage>::new(
            NetlinkHeader::default(),
            NetlinkPayload::Error(netlink_packet_core::ErrorMessage::default()),
        );
        if let NetlinkPayload::Error(e) = &mut error.payload {
            e.code = std::num::NonZeroI32::new(-1);
        }
        error.finalize();
        let mut bytes = vec![0; error.buffer_len()];
        error.serialize(&mut bytes);
        let mut found = Vec::new();
        let err = parse_batch(&bytes, 1, &mut found).expect_err("an error");
        assert_eq!(err.raw_os_error(), Some(1));
        // Garbage is an error, not a panic; nothing is no answer yet.
        assert!(parse_batch(&[1, 2, 3], 1, &mut found).is_err());
        assert!(!parse_batch(&[], 1, &mut found).expect("empty"));
        assert!(found.is_empty());
    }
}
