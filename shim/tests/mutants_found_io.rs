//! Cases `make mutants` found untested in the runsc backend's container IO
//! (issue 13): the terminal path, resizes, duplicated stdio, and what
//! `Delete` closes while a process in the sandbox still holds its end.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use agentbox_shim::backend::runsc::io::{ConsoleSocket, ProcessIo, StdioPaths};

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Open a FIFO's read end without waiting for a writer, then make it blocking.
fn fifo_reader(path: &Path) -> File {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap();
    // SAFETY: F_SETFL on a descriptor we own.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, 0) };
    f
}

/// Read what `f` yields until EOF, in a blocking thread, bounded by 5 s:
/// `None` if no EOF came in time.
async fn read_to_eof(mut f: File) -> Option<Vec<u8>> {
    let t = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        f.read_to_end(&mut v).map(|_| v)
    });
    tokio::time::timeout(Duration::from_secs(5), t)
        .await
        .ok()
        .map(|r| r.unwrap().unwrap())
}

fn same_file(a: &impl AsFd, b: &impl AsFd) -> bool {
    let a = nix::sys::stat::fstat(a).unwrap();
    let b = nix::sys::stat::fstat(b).unwrap();
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

/// The stdio handed to both `runsc create` and `runsc start` of a
/// subcontainer is the same set of pipes (`ChildStdio::try_clone` returning
/// empty ends).
#[tokio::test]
async fn cloned_child_stdio_is_the_same_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out, err) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("err"),
    );
    for p in [&inp, &out, &err] {
        mkfifo(p);
    }
    let paths = StdioPaths {
        stdin: inp.display().to_string(),
        stdout: out.display().to_string(),
        stderr: err.display().to_string(),
        terminal: false,
    };
    let (_io, child) = ProcessIo::pipes(&paths).unwrap();
    // containerd's writer (read-write: opens without waiting); dropped at
    // the end, it ends the shim's blocking read of the FIFO
    let _writer = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&inp)
        .unwrap();
    let copy = child.try_clone().unwrap();
    for (a, b) in [
        (&child.stdin, &copy.stdin),
        (&child.stdout, &copy.stdout),
        (&child.stderr, &copy.stderr),
    ] {
        let (a, b): (&OwnedFd, &OwnedFd) = (a.as_ref().unwrap(), b.as_ref().expect("an end"));
        assert_ne!(a.as_raw_fd(), b.as_raw_fd());
        assert!(same_file(a, b));
    }
}

/// A terminal process: what containerd writes to the stdin FIFO reaches the
/// pty master, and what the master yields reaches the stdout FIFO (deleting
/// either `!` of `ProcessIo::console`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_io_goes_through_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let (inp, out) = (dir.path().join("in"), dir.path().join("out"));
    mkfifo(&inp);
    mkfifo(&out);
    let reader = fifo_reader(&out);
    // the master's other side, as the terminal inside the sandbox
    let (master, mut tty) = UnixStream::pair().unwrap();
    let paths = StdioPaths {
        stdin: inp.display().to_string(),
        stdout: out.display().to_string(),
        stderr: String::new(),
        terminal: true,
    };
    let io = ProcessIo::console(&paths, OwnedFd::from(master)).unwrap();

    let mut w = tokio::task::spawn_blocking(move || {
        let mut w = OpenOptions::new().write(true).open(&inp).unwrap();
        w.write_all(b"typed").unwrap();
        w
    })
    .await
    .unwrap();
    w.flush().unwrap();
    tty.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 5];
    tty.read_exact(&mut got)
        .expect("stdin reached the terminal");
    assert_eq!(&got, b"typed");

    tty.write_all(b"printed").unwrap();
    drop(tty);
    let printed = read_to_eof(reader).await.expect("stdout reached EOF");
    assert_eq!(printed, b"printed");
    io.shutdown();
}

/// `ResizePty` sets the terminal's size on a real pty, and fails on a
/// master that is no terminal (the `rc < 0` check as `==`, `>` or `<=`).
#[tokio::test]
async fn resize_sets_the_pty_size_and_reports_failure() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let io = ProcessIo::console(&StdioPaths::default(), pty.master).unwrap();
    io.resize(132, 43).unwrap();
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize we own.
    assert_eq!(
        unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) },
        0
    );
    assert_eq!((ws.ws_col, ws.ws_row), (132, 43));

    let (not_a_tty, _peer) = UnixStream::pair().unwrap();
    let io = ProcessIo::console(&StdioPaths::default(), OwnedFd::from(not_a_tty)).unwrap();
    assert!(
        io.resize(80, 24).is_err(),
        "a resize that failed reported Ok"
    );
}

/// `Delete` (shutdown, or dropping the IO) closes the stdout FIFO even while
/// a process in the sandbox still holds its end of the pipe: containerd's
/// reader sees EOF (`shutdown` → `()`, `drop` → `()`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_closes_the_fifos_while_the_process_holds_its_end() {
    for by_drop in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        mkfifo(&out);
        let reader = fifo_reader(&out);
        let paths = StdioPaths {
            stdout: out.display().to_string(),
            ..Default::default()
        };
        let (io, child) = ProcessIo::pipes(&paths).unwrap();
        // the sandboxed process: keeps its stdout open, writes a line
        let mut held = File::from(child.stdout.unwrap());
        held.write_all(b"line\n").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if by_drop {
            drop(io);
        } else {
            io.shutdown();
        }
        let got = read_to_eof(reader).await;
        assert!(got.is_some(), "no EOF after Delete (by drop: {by_drop})");
        drop(held);
    }
}

/// runsc may connect to the console socket a while after `create` started:
/// the wait lasts up to the timeout, not less (the deadline's `+` as `-`,
/// `>` as `<`, the `WouldBlock` guard as `false` or `!=`).
#[test]
fn console_socket_waits_for_a_late_runsc() {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let sock = ConsoleSocket::bind(&path).unwrap();
    assert_eq!(sock.path(), path);
    let p2 = path.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let s = UnixStream::connect(p2).unwrap();
        let f = File::open("/dev/null").unwrap();
        let iov = [std::io::IoSlice::new(b"pty")];
        sendmsg::<()>(
            s.as_raw_fd(),
            &iov,
            &[ControlMessage::ScmRights(&[f.as_raw_fd()])],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
    });
    let fd = sock.receive_master(Duration::from_secs(10)).unwrap();
    t.join().unwrap();
    let want = File::open("/dev/null").unwrap();
    assert!(same_file(&fd, &want));
}
