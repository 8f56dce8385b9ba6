//! Listening sockets that survive a daemon restart.
//!
//! On `bodywork daemon --restart` the running daemon starts the next one
//! itself and hands it the gateway's and the cluster addresses' listening
//! sockets (inherited file descriptors, named in [`INHERITED_ENV`] as
//! `ADDR=FD,...`). Both daemons accept on the same sockets until the new one
//! is up; then the old one stops accepting, lets its requests finish and
//! exits. No connection is refused at any moment.
//!
//! The same sockets, and the CLI's Unix socket, are also sent to the
//! daemon's supervisor (`crate::supervisor`) as they are opened, so that they
//! stay open while a crashed daemon is started again.
//!
//! Owns: binding listeners (or taking inherited ones), keeping a duplicate
//! of each so it can be handed on, and the descriptor bookkeeping of the
//! hand-over and of the supervisor. Must not: decide when to hand over (the
//! daemon does).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Mutex;

use crate::supervisor;

/// The environment variable naming inherited listeners: `ADDR=FD,...`.
pub const INHERITED_ENV: &str = "BODYWORK_INHERITED_LISTENERS";

/// The backlog of every listening socket: connections the kernel has
/// accepted that the daemon has not taken yet.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Listeners this daemon was started with, not yet claimed, and those it
/// listens on (duplicates, kept to hand on).
#[derive(Default)]
pub struct Listeners {
    inherited: Mutex<HashMap<SocketAddr, TcpListener>>,
    open: Mutex<HashMap<SocketAddr, TcpListener>>,
    /// This daemon's end of the socket pair to its supervisor, if it has one.
    supervisor: Option<OwnedFd>,
}

impl Listeners {
    /// The listeners named in [`INHERITED_ENV`]. An entry that is not an
    /// open TCP listener bound to its address is ignored (and its descriptor
    /// left alone). The variable may reach this daemon's children; the
    /// descriptors do not (they are made close-on-exec again).
    pub fn inherit() -> Listeners {
        let listeners = Listeners {
            supervisor: std::env::var(supervisor::SUPERVISOR_FD_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                .and_then(adopt_channel),
            ..Listeners::default()
        };
        let Some(value) = std::env::var_os(INHERITED_ENV) else {
            return listeners;
        };
        let mut inherited = HashMap::new();
        let value = value.to_string_lossy();
        for (_, addr, fd) in inherited_entries(&value) {
            if let Some(listener) = adopt_fd(fd, addr) {
                inherited.insert(addr, listener);
            } else {
                tracing::warn!(target: "daemon", "ignoring inherited listener {addr}={fd}: not a listener on {addr}");
            }
        }
        if let Ok(mut slot) = listeners.inherited.lock() {
            *slot = inherited;
        }
        listeners
    }

    /// A listener on `addr`: the inherited one if there is one, else a new
    /// one. Kept (as a duplicate) to hand on at the next restart.
    pub fn listen(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        let taken = self
            .inherited
            .lock()
            .ok()
            .and_then(|mut inherited| inherited.remove(&addr));
        let listener = match taken {
            Some(listener) => listener,
            None => TcpListener::bind(addr)?,
        };
        listener.set_nonblocking(true)?;
        // Connections over the gateway's or cluster addresses' limit wait
        // in the backlog: a deeper one than std's 128 (the kernel caps it
        // at net.core.somaxconn). Listening again only changes its depth.
        if let Err(e) = socket2::SockRef::from(&listener).listen(LISTEN_BACKLOG) {
            tracing::warn!(target: "daemon", "cannot deepen the backlog of {addr}: {e}");
        }
        let keep = listener.try_clone()?;
        self.tell_supervisor(&addr.to_string(), Some(keep.as_raw_fd()));
        if let Ok(mut open) = self.open.lock() {
            open.insert(addr, keep);
        }
        tokio::net::TcpListener::from_std(listener)
    }

    /// The CLI's listening Unix socket at `path`: the one the supervisor
    /// kept open across a crash if there is one, else a new one (a file left
    /// at `path` by a daemon that died unsupervised is replaced).
    pub fn control(&self, path: &Path) -> std::io::Result<tokio::net::UnixListener> {
        let kept = std::env::var(supervisor::CONTROL_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .and_then(adopt_unix_fd)
            .filter(|l| {
                l.local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf))
                    .is_some_and(|p| p == path)
            });
        let listener = match kept {
            Some(listener) => listener,
            None => {
                let _ = std::fs::remove_file(path);
                UnixListener::bind(path)?
            }
        };
        listener.set_nonblocking(true)?;
        self.tell_supervisor(supervisor::CONTROL_KEY, Some(listener.as_raw_fd()));
        tokio::net::UnixListener::from_std(listener)
    }

    /// Forget the listener on `addr` (its service stopped listening there).
    pub fn close(&self, addr: SocketAddr) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&addr);
        }
        self.tell_supervisor(&addr.to_string(), None);
    }

    /// This daemon hands over to a new one (which has a supervisor of its
    /// own): its supervisor ends with it.
    pub fn retire(&self) {
        if let Some(channel) = &self.supervisor
            && let Err(e) = supervisor::tell_retire(channel.as_raw_fd())
        {
            tracing::warn!(target: "daemon", "cannot tell the supervisor to retire: {e}");
        }
    }

    /// Close inherited listeners nothing claimed (services that are gone).
    pub fn drop_unclaimed(&self) {
        if let Ok(mut inherited) = self.inherited.lock() {
            for addr in inherited.keys() {
                tracing::info!(target: "daemon", "closing the inherited listener on {addr}: nothing listens there any more");
                self.tell_supervisor(&addr.to_string(), None);
            }
            inherited.clear();
        }
    }

    /// Tell the supervisor, if there is one, that the listener under `key`
    /// is open (`fd`, a duplicate of which it keeps) or closed (`None`).
    /// Without a supervisor, or with one gone, nothing is lost but the
    /// sockets' survival of a crash.
    fn tell_supervisor(&self, key: &str, fd: Option<RawFd>) {
        let Some(channel) = &self.supervisor else {
            return;
        };
        let told = match fd {
            Some(fd) => supervisor::tell_opened(channel.as_raw_fd(), key, fd),
            None => supervisor::tell_closed(channel.as_raw_fd(), key),
        };
        if let Err(e) = told {
            tracing::warn!(target: "daemon", "cannot tell the supervisor about the listener {key}: {e}");
        }
    }

    /// What to hand on: `(addr, fd)` of every open listener, and the value
    /// of [`INHERITED_ENV`] for the next daemon. The descriptors stay owned
    /// here (the next daemon gets copies when it is spawned).
    pub fn handed_on(&self) -> (Vec<RawFd>, String) {
        let Ok(open) = self.open.lock() else {
            return (Vec::new(), String::new());
        };
        let fds: Vec<RawFd> = open.values().map(AsRawFd::as_raw_fd).collect();
        let env = open
            .iter()
            .map(|(addr, l)| format!("{addr}={}", l.as_raw_fd()))
            .collect::<Vec<_>>()
            .join(",");
        (fds, env)
    }
}

/// The well-formed `ADDR=FD` entries of an [`INHERITED_ENV`] value: `ADDR`
/// as written (the key a listener is held under), parsed, and the descriptor.
pub(crate) fn inherited_entries(value: &str) -> impl Iterator<Item = (&str, SocketAddr, RawFd)> {
    value.split(',').filter_map(|entry| {
        let (key, fd) = entry.split_once('=')?;
        Some((key, key.parse().ok()?, fd.parse().ok()?))
    })
}

/// Whether `fd` can be a descriptor handed to this process: open, and not
/// a standard stream (those are never handed on).
fn handed(fd: RawFd) -> bool {
    fd >= 3 && nix::fcntl::fcntl(borrowed(fd), nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

/// Make `fd` close-on-exec again (it was kept open across `exec` for us).
fn close_on_exec(fd: RawFd) -> bool {
    let cloexec = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC);
    nix::fcntl::fcntl(borrowed(fd), cloexec).is_ok()
}

/// Take `fd` as a TCP listener if it is one, bound to `addr` (any port of
/// its IP when `addr` asked for port 0), close-on-exec again.
pub(crate) fn adopt_fd(fd: RawFd, addr: SocketAddr) -> Option<TcpListener> {
    if !handed(fd) {
        return None;
    }
    // SAFETY: `fd` is open (checked above) and was handed to this process
    // for this purpose by the daemon that spawned it; nothing else in this
    // process uses it. If it turns out not to be our listener it is given
    // back untouched (`into_raw_fd`), never closed.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let ours = listener
        .local_addr()
        .is_ok_and(|b| b == addr || (addr.port() == 0 && b.ip() == addr.ip()));
    if ours && close_on_exec(fd) {
        Some(listener)
    } else {
        let _ = listener.into_raw_fd();
        None
    }
}

/// Take `fd` as a listening Unix socket if it is one, close-on-exec again.
pub(crate) fn adopt_unix_fd(fd: RawFd) -> Option<UnixListener> {
    use nix::sys::socket::{getsockopt, sockopt};
    if !handed(fd) {
        return None;
    }
    let fd_ref = borrowed(fd);
    let listening = getsockopt(&fd_ref, sockopt::AcceptConn).unwrap_or(false);
    let unix = getsockopt(&fd_ref, sockopt::SockType)
        .is_ok_and(|t| t == nix::sys::socket::SockType::Stream)
        && nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(fd).is_ok();
    if listening && unix && close_on_exec(fd) {
        // SAFETY: open (checked above), a listening Unix socket handed to
        // this process for this purpose; nothing else here uses it.
        Some(unsafe { UnixListener::from_raw_fd(fd) })
    } else {
        None
    }
}

/// Take `fd` as the channel to the supervisor if it is a sequenced-packet
/// socket, close-on-exec (so no stage or replica inherits it).
fn adopt_channel(fd: RawFd) -> Option<OwnedFd> {
    use nix::sys::socket::{SockType, getsockopt, sockopt};
    if !handed(fd) {
        return None;
    }
    let seqpacket =
        getsockopt(&borrowed(fd), sockopt::SockType).is_ok_and(|t| t == SockType::SeqPacket);
    if seqpacket && close_on_exec(fd) {
        // SAFETY: open (checked above) and handed to this process by its
        // supervisor for this purpose alone.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    } else {
        None
    }
}

fn borrowed(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: only used for fcntl on a descriptor number that the caller
    // checks; a closed descriptor makes fcntl fail with EBADF, nothing worse.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// In a freshly forked child (`pre_exec`): let `fds` survive `exec`.
/// Only async-signal-safe calls.
pub fn keep_across_exec(fds: &[RawFd]) -> std::io::Result<()> {
    for fd in fds {
        nix::fcntl::fcntl(
            borrowed(*fd),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .map_err(std::io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_kept_to_hand_on_and_unrelated_fds_are_not_taken() {
        let listeners = Listeners::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = rt.enter();
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let l = listeners.listen(any).expect("listen");
        let bound = l.local_addr().expect("bound");
        // Kept under the address asked for.
        let (fds, env) = listeners.handed_on();
        assert_eq!(fds.len(), 1);
        assert_eq!(env, format!("{any}={}", fds[0]));
        // The kept duplicate is the same socket, found under either address.
        let dup = adopt_fd(fds[0], bound).map(IntoRawFd::into_raw_fd);
        assert_eq!(dup, Some(fds[0]));
        let dup = adopt_fd(fds[0], any).map(IntoRawFd::into_raw_fd);
        assert_eq!(dup, Some(fds[0]));
        // A descriptor that is not a listener on that address is refused.
        assert!(adopt_fd(fds[0], "127.0.0.1:1".parse().expect("addr")).is_none());
        assert!(adopt_fd(1, bound).is_none());
        listeners.close(any);
        assert!(listeners.handed_on().0.is_empty());
    }
}
