//! The sink's socket: a `SOCK_SEQPACKET` unix listener in a private (0700)
//! directory that accepts exactly one connection, the sandbox's, and answers
//! its handshake.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentbox_activity::wire;
use nix::sys::socket::{self, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr};

/// A bound, listening socket and its path (removed on drop).
pub struct Listener {
    fd: OwnedFd,
    pub path: PathBuf,
}

impl Listener {
    /// Bind in `dir` (created 0700), under a name from `id`; a directory
    /// whose path would be too long for a socket falls back to the temp dir.
    pub fn bind(dir: &Path, id: &str) -> io::Result<Listener> {
        let short: String = id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("act-{short}-{n:x}.sock");
        let dir = if dir.join(&name).as_os_str().len() < 100 {
            dir.to_path_buf()
        } else {
            std::env::temp_dir().join("agentbox-activity")
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        let addr = UnixAddr::new(&path)?;
        socket::bind(fd.as_raw_fd(), &addr)?;
        socket::listen(&fd, Backlog::new(1)?)?;
        Ok(Listener { fd, path })
    }

    /// Wait for the sandbox to connect and complete the handshake.
    pub fn accept(&self) -> io::Result<Connection> {
        let raw = socket::accept4(self.fd.as_raw_fd(), SockFlag::SOCK_CLOEXEC)?;
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let conn = Connection { fd };
        // the sentry's runsc waits for our reply; never hang on a silent peer
        conn.set_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = vec![0u8; 1024];
        let n = conn.recv(&mut buf)?;
        wire::read_handshake(&buf[..n]).map_err(io::Error::other)?;
        socket::send(
            conn.fd.as_raw_fd(),
            &wire::handshake_reply(),
            MsgFlags::empty(),
        )?;
        conn.set_timeout(None)?;
        // No receive buffer to size here: for a connected unix SEQPACKET
        // pair Linux bounds the points in flight by the *sender's* send
        // buffer (net.core.wmem_default, 208 KiB: ~170 points measured), not
        // by this socket's SO_RCVBUF or net.unix.max_dgram_qlen. Beyond it
        // the sentry's non-blocking write fails and it drops and counts the
        // point (the count reaches the audit in a `dropped` record). So the
        // reader thread does nothing but read, decode and hand on.
        Ok(conn)
    }

    /// Unblock a thread waiting in `accept`.
    pub fn shutdown(&self) {
        let _ = socket::shutdown(self.fd.as_raw_fd(), socket::Shutdown::Both);
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The sandbox's connection.
pub struct Connection {
    fd: OwnedFd,
}

impl Connection {
    /// One datagram; 0 at the end of the stream.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match socket::recv(self.fd.as_raw_fd(), buf, MsgFlags::MSG_TRUNC) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(n) => return Ok(n),
            }
        }
    }

    fn set_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        let tv = nix::sys::time::TimeVal::new(
            t.map(|d| d.as_secs() as i64).unwrap_or(0),
            t.map(|d| d.subsec_micros() as i64).unwrap_or(0),
        );
        socket::setsockopt(&self.fd, socket::sockopt::ReceiveTimeout, &tv)?;
        Ok(())
    }

    /// A handle to end the stream from another thread.
    pub fn shutdown_handle(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}
