//! A netlink request/answer helper over `netlink-sys` sockets: send a batch of
//! messages, collect every answer up to the acknowledgements, turn a NACK
//! into an error naming what failed.

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkMessage, NetlinkPayload, NetlinkSerializable, NLM_F_ACK,
    NLM_F_REQUEST,
};
use netlink_sys::Socket;

pub struct Nl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// A failed request: the kernel's errno and which message it was.
#[derive(Debug)]
pub struct NlError {
    pub errno: i32,
    pub what: String,
}

impl std::fmt::Display for NlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "{}: {e}", self.what)
    }
}

impl Nl {
    /// A socket of netlink `protocol` in the calling thread's namespace.
    pub fn new(protocol: isize) -> std::io::Result<Nl> {
        let mut sock = Socket::new(protocol)?;
        sock.bind_auto()?;
        let _ = sock.set_ext_ack(true);
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a valid timeval on our own socket.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        let _ = sock.set_rx_buf_sz(1 << 20);
        Ok(Nl {
            sock,
            seq: std::process::id().wrapping_mul(7919),
            buf: vec![0; 1 << 16],
        })
    }

    /// The socket, for reading on after the requests.
    pub fn into_socket(self) -> Socket {
        self.sock
    }

    /// Send `msgs` in one datagram (each with REQUEST; those with `ack` also
    /// ACK) and return every non-ack answer once all acks came back. `what`
    /// names message `i` in errors. Dump requests end at NLMSG_DONE.
    pub fn request<T>(
        &mut self,
        msgs: Vec<(NetlinkMessage<T>, bool)>,
        what: impl Fn(usize) -> String,
    ) -> Result<Vec<NetlinkMessage<T>>, NlError>
    where
        T: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        let mut out = Vec::new();
        let mut expect_acks = Vec::new();
        let mut dump = false;
        let mut seqs = Vec::new();
        for (mut m, ack) in msgs {
            self.seq = self.seq.wrapping_add(1);
            m.header.sequence_number = self.seq;
            m.header.flags |= NLM_F_REQUEST;
            if ack {
                m.header.flags |= NLM_F_ACK;
                expect_acks.push(self.seq);
            }
            if m.header.flags & netlink_packet_core::NLM_F_DUMP == netlink_packet_core::NLM_F_DUMP {
                dump = true;
            }
            m.finalize();
            let start = out.len();
            out.resize(start + m.buffer_len(), 0);
            m.serialize(&mut out[start..]);
            seqs.push(self.seq);
        }
        let io_err = |e: std::io::Error, w: String| NlError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            what: w,
        };
        self.sock
            .send(&out, 0)
            .map_err(|e| io_err(e, "netlink send".into()))?;
        let mut answers = Vec::new();
        let mut dump_done = !dump;
        while !expect_acks.is_empty() || !dump_done {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|e| io_err(e, "netlink receive".into()))?;
            let mut off = 0;
            while off < n {
                let m =
                    NetlinkMessage::<T>::deserialize(&self.buf[off..n]).map_err(|e| NlError {
                        errno: libc::EBADMSG,
                        what: format!("unreadable netlink answer: {e}"),
                    })?;
                let len = m.header.length as usize;
                let seq = m.header.sequence_number;
                match m.payload {
                    // an answer to an earlier request (after its error): not ours
                    _ if !seqs.contains(&seq) => {}
                    NetlinkPayload::Error(ref e) => {
                        if let Some(code) = e.code {
                            let i = seqs.iter().position(|s| *s == seq).unwrap_or(usize::MAX);
                            return Err(NlError {
                                errno: -code.get(),
                                what: what(i),
                            });
                        }
                        expect_acks.retain(|s| *s != seq);
                    }
                    NetlinkPayload::Done(_) => dump_done = true,
                    _ => answers.push(m),
                }
                if len == 0 {
                    break;
                }
                off += len.div_ceil(4) * 4;
            }
        }
        Ok(answers)
    }
}
