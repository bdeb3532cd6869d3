//! Container IO: the FIFOs containerd hands the shim, connected to the
//! container through pipes (or through the pty master runsc sends over a
//! console socket when the process has a terminal).
//!
//! The shim owns the copies, so it controls the lifetime of the FIFOs:
//! `CloseIO` closes the container's stdin, `Delete` closes everything even if
//! a process inside the sandbox still holds its end of a pipe.

use std::fs::{File, OpenOptions};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The FIFO paths of one process, as containerd passes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The ends handed to runsc as its stdin/stdout/stderr (non-terminal case).
#[derive(Debug, Default)]
pub struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl ChildStdio {
    /// Duplicate the ends so the same IO can be handed to two runsc calls
    /// (`create` and `start` of a subcontainer both donate their stdio).
    pub fn try_clone(&self) -> std::io::Result<ChildStdio> {
        let dup = |f: &Option<OwnedFd>| f.as_ref().map(|f| f.try_clone()).transpose();
        Ok(ChildStdio {
            stdin: dup(&self.stdin)?,
            stdout: dup(&self.stdout)?,
            stderr: dup(&self.stderr)?,
        })
    }
}

/// The shim side of one process's IO: copy tasks and the handles to stop them.
#[derive(Debug)]
pub struct ProcessIo {
    stdin_close: Arc<Notify>,
    copies: Mutex<Vec<JoinHandle<()>>>,
    outputs: Mutex<Vec<JoinHandle<()>>>,
    /// The pty master, for resizes (terminal processes only).
    console: Mutex<Option<Arc<OwnedFd>>>,
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// Open a FIFO for writing without waiting for a reader: O_RDWR never blocks
/// on a FIFO, and the reader still sees EOF once this (only other) writer closes.
fn open_fifo_for_write(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

impl ProcessIo {
    fn empty() -> ProcessIo {
        ProcessIo {
            stdin_close: Arc::new(Notify::new()),
            copies: Mutex::new(Vec::new()),
            outputs: Mutex::new(Vec::new()),
            console: Mutex::new(None),
        }
    }

    /// Set up pipes for a non-terminal process. Returns the shim side and the
    /// ends for runsc.
    pub fn pipes(paths: &StdioPaths) -> std::io::Result<(ProcessIo, ChildStdio)> {
        let io = ProcessIo::empty();
        let mut child = ChildStdio::default();
        if !paths.stdin.is_empty() {
            let (r, w) = pipe()?;
            child.stdin = Some(r);
            let sink = tokio::net::unix::pipe::Sender::from_owned_fd(w)?;
            io.spawn_stdin(paths.stdin.clone(), Box::new(sink));
        }
        for (path, slot, is_out) in [
            (&paths.stdout, &mut child.stdout, true),
            (&paths.stderr, &mut child.stderr, false),
        ] {
            if path.is_empty() {
                continue;
            }
            let (r, w) = pipe()?;
            let fifo = open_fifo_for_write(path)?;
            *slot = Some(w);
            let _ = is_out;
            let src = tokio::net::unix::pipe::Receiver::from_owned_fd(r)?;
            let dst = tokio::net::unix::pipe::Sender::from_file(fifo)?;
            let handle = tokio::spawn(copy_out(src, dst));
            io.outputs.lock().unwrap().push(handle);
        }
        Ok((io, child))
    }

    fn spawn_stdin(&self, path: String, mut sink: Box<dyn tokio::io::AsyncWrite + Send + Unpin>) {
        let close = self.stdin_close.clone();
        let handle = tokio::spawn(async move {
            // Opening a FIFO for reading blocks until containerd opens the writer.
            let opened = tokio::task::spawn_blocking(move || {
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
            });
            tokio::select! {
                _ = close.notified() => {}
                r = async {
                    let Ok(Ok(src)) = opened.await else { return };
                    let mut src = tokio::fs::File::from_std(src);
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match src.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => if sink.write_all(&buf[..n]).await.is_err() { break },
                        }
                    }
                } => r,
            }
            // dropping `sink` closes the container's stdin
        });
        self.copies.lock().unwrap().push(handle);
    }

    /// Set up IO through a pty master received from runsc.
    pub fn console(paths: &StdioPaths, master: OwnedFd) -> std::io::Result<ProcessIo> {
        let io = ProcessIo::empty();
        let master = Arc::new(master);
        *io.console.lock().unwrap() = Some(master.clone());
        if !paths.stdin.is_empty() {
            let w = tokio::fs::File::from_std(File::from(master.try_clone()?));
            io.spawn_stdin(paths.stdin.clone(), Box::new(w));
        }
        if !paths.stdout.is_empty() {
            let fifo = open_fifo_for_write(&paths.stdout)?;
            let src = tokio::fs::File::from_std(File::from(master.try_clone()?));
            let dst = tokio::net::unix::pipe::Sender::from_file(fifo)?;
            let handle = tokio::spawn(copy_out(src, dst));
            io.outputs.lock().unwrap().push(handle);
        }
        Ok(io)
    }

    /// No IO at all (containerd passed no FIFOs).
    pub fn none() -> ProcessIo {
        ProcessIo::empty()
    }

    /// Close the container's stdin (`CloseIO`).
    pub fn close_stdin(&self) {
        self.stdin_close.notify_waiters();
        self.stdin_close.notify_one();
    }

    /// Resize the terminal (`ResizePty`).
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<()> {
        let guard = self.console.lock().unwrap();
        let Some(master) = guard.as_ref() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "process has no terminal",
            ));
        };
        let ws = libc::winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct we own for the duration of the call.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait (bounded) for the output copies to drain after the process exited,
    /// so the last output reaches containerd before the exit event.
    pub async fn drain(&self, limit: Duration) {
        let handles: Vec<_> = std::mem::take(&mut *self.outputs.lock().unwrap());
        for mut h in handles {
            if tokio::time::timeout(limit, &mut h).await.is_err() {
                // still running: keep it so `shutdown` can abort it
                self.outputs.lock().unwrap().push(h);
            }
        }
    }

    /// Stop every copy and close the FIFOs (`Delete`).
    pub fn shutdown(&self) {
        self.close_stdin();
        for h in self.copies.lock().unwrap().drain(..) {
            h.abort();
        }
        for h in self.outputs.lock().unwrap().drain(..) {
            h.abort();
        }
        self.console.lock().unwrap().take();
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn copy_out<R, W>(mut src: R, mut dst: W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match src.read(&mut buf).await {
            // EIO on a pty master means the slave side closed: end of output.
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if dst.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = dst.flush().await;
}

/// A console socket runsc connects to, to hand over the pty master.
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Bind a console socket at `path` (its parent must exist; keep it short:
    /// unix socket paths are limited to 107 bytes).
    pub fn bind(path: &Path) -> std::io::Result<ConsoleSocket> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        Ok(ConsoleSocket {
            path: path.to_path_buf(),
            listener,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Receive the pty master (blocking; run it on a blocking thread), bounded by `timeout`.
    pub fn receive_master(self, timeout: Duration) -> std::io::Result<OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        self.listener.set_nonblocking(true)?;
        let deadline = std::time::Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > deadline {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "runsc did not connect to the console socket",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(e),
            }
        };
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(timeout))?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(std::io::Error::from)?;
        for c in msg.cmsgs().map_err(std::io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just installed this descriptor for us.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "runsc sent no terminal over the console socket",
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn mkfifo(path: &Path) {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }

    #[tokio::test]
    async fn stdout_is_copied_to_the_fifo_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        mkfifo(&out);
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&out)
            .unwrap();
        let paths = StdioPaths {
            stdout: out.display().to_string(),
            ..Default::default()
        };
        let (io, child) = ProcessIo::pipes(&paths).unwrap();
        let mut w = File::from(child.stdout.unwrap());
        w.write_all(b"hello\n").unwrap();
        drop(w);
        io.drain(Duration::from_secs(5)).await;
        // switch to blocking and read all: EOF arrives because the shim closed its writer
        let mut s = String::new();
        let fd = reader.as_raw_fd();
        unsafe { libc::fcntl(fd, libc::F_SETFL, 0) };
        reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello\n");
    }

    #[tokio::test]
    async fn stdin_is_copied_and_close_io_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let inp = dir.path().join("in");
        mkfifo(&inp);
        let paths = StdioPaths {
            stdin: inp.display().to_string(),
            ..Default::default()
        };
        let (io, child) = ProcessIo::pipes(&paths).unwrap();
        let inp2 = inp.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut f = OpenOptions::new().write(true).open(inp2).unwrap();
            f.write_all(b"abc").unwrap();
            f // keep the writer open: EOF must come from CloseIO, not from the writer
        });
        let mut r = File::from(child.stdin.unwrap());
        let mut buf = [0u8; 3];
        let got = tokio::task::spawn_blocking(move || {
            r.read_exact(&mut buf).unwrap();
            (buf, r)
        })
        .await
        .unwrap();
        assert_eq!(&got.0, b"abc");
        let _w = writer.await.unwrap();
        io.close_stdin();
        let mut r = got.1;
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || {
                let mut rest = Vec::new();
                r.read_to_end(&mut rest).unwrap();
                rest.len()
            }),
        )
        .await
        .expect("stdin closed after CloseIO")
        .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn console_socket_receives_a_descriptor() {
        use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sock");
        let sock = ConsoleSocket::bind(&path).unwrap();
        let p2 = path.clone();
        let t = std::thread::spawn(move || {
            let s = std::os::unix::net::UnixStream::connect(p2).unwrap();
            let f = File::open("/dev/null").unwrap();
            let fds = [f.as_raw_fd()];
            let iov = [std::io::IoSlice::new(b"pty")];
            sendmsg::<()>(
                s.as_raw_fd(),
                &iov,
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
        });
        let fd = sock.receive_master(Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        // the very file that was sent: same device and inode as /dev/null
        let got = nix::sys::stat::fstat(&fd).unwrap();
        let want = nix::sys::stat::stat("/dev/null").unwrap();
        assert_eq!((got.st_dev, got.st_ino), (want.st_dev, want.st_ino));
        // receiving consumed the socket: its file is gone
        assert!(!path.exists(), "console socket left at {}", path.display());
    }

    #[test]
    fn console_socket_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let sock = ConsoleSocket::bind(&dir.path().join("c.sock")).unwrap();
        let e = sock.receive_master(Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    }

    #[test]
    fn resize_without_terminal_is_an_error() {
        let io = ProcessIo::none();
        assert!(io.resize(80, 24).is_err());
    }
}
