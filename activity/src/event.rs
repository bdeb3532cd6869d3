//! A point decoded into what agentbox records from it.

use prost::Message;

use crate::proto::{self, kind, ContextData};

/// Who did it: the task's process and container, as the sentry reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ctx {
    pub tgid: i32,
    pub tid: i32,
    pub container: String,
    pub cwd: String,
    pub name: String,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl From<Option<ContextData>> for Ctx {
    fn from(c: Option<ContextData>) -> Ctx {
        let c = c.unwrap_or_default();
        Ctx {
            tgid: c.thread_group_id,
            tid: c.thread_id,
            container: c.container_id,
            cwd: c.cwd,
            name: c.process_name,
            uid: c.credentials.as_ref().map(|c| c.effective_uid),
            gid: c.credentials.as_ref().map(|c| c.effective_gid),
        }
    }
}

/// A socket address from the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SockAddr {
    Inet {
        v6: bool,
        address: String,
        port: u16,
    },
    Unix(String),
    /// Another family (netlink, packet...): its number.
    Other(u16),
}

/// Which socket call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetCall {
    Connect,
    Bind,
    Accept,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ContainerStart {
        ctx: Ctx,
        id: String,
        cwd: String,
        args: Vec<String>,
    },
    Clone {
        ctx: Ctx,
        child_tgid: i32,
    },
    Exec {
        ctx: Ctx,
        binary: String,
        argv: Vec<String>,
    },
    /// A task exited (the whole process when `ctx.tid == ctx.tgid`).
    TaskExit {
        ctx: Ctx,
        status: i32,
    },
    Open {
        ctx: Ctx,
        /// The directory fd (`AT_FDCWD` = -100) and its path.
        dirfd: i64,
        dir_path: String,
        pathname: String,
        flags: u32,
        /// The syscall's result: the new fd, or `-errno`.
        result: i64,
    },
    Net {
        ctx: Ctx,
        call: NetCall,
        addr: Option<SockAddr>,
        /// 0 or a fd on success, else `-errno`.
        result: i64,
    },
    /// A message type agentbox does not read.
    Other(u16),
}

/// Decode a point's payload by its header's message type.
pub fn decode(message_type: u16, payload: &[u8]) -> Result<Event, prost::DecodeError> {
    Ok(match message_type {
        kind::CONTAINER_START => {
            let m = proto::Start::decode(payload)?;
            Event::ContainerStart {
                ctx: m.context_data.into(),
                id: m.id,
                cwd: m.cwd,
                args: m.args,
            }
        }
        kind::SENTRY_CLONE => {
            let m = proto::CloneInfo::decode(payload)?;
            Event::Clone {
                ctx: m.context_data.into(),
                child_tgid: m.created_thread_group_id,
            }
        }
        kind::SENTRY_EXEC => {
            let m = proto::ExecveInfo::decode(payload)?;
            Event::Exec {
                ctx: m.context_data.into(),
                binary: m.binary_path,
                argv: m.argv,
            }
        }
        kind::SENTRY_TASK_EXIT => {
            let m = proto::TaskExit::decode(payload)?;
            Event::TaskExit {
                ctx: m.context_data.into(),
                status: m.exit_status,
            }
        }
        kind::SYSCALL_OPEN => {
            let m = proto::Open::decode(payload)?;
            Event::Open {
                result: result(&m.exit),
                ctx: m.context_data.into(),
                dirfd: m.fd,
                dir_path: m.fd_path,
                pathname: m.pathname,
                flags: m.flags,
            }
        }
        t @ (kind::SYSCALL_CONNECT | kind::SYSCALL_BIND | kind::SYSCALL_ACCEPT) => {
            let m = proto::SockAddrCall::decode(payload)?;
            Event::Net {
                result: result(&m.exit),
                ctx: m.context_data.into(),
                call: match t {
                    kind::SYSCALL_CONNECT => NetCall::Connect,
                    kind::SYSCALL_BIND => NetCall::Bind,
                    _ => NetCall::Accept,
                },
                addr: parse_sockaddr(&m.address),
            }
        }
        other => Event::Other(other),
    })
}

fn result(exit: &Option<proto::Exit>) -> i64 {
    match exit {
        Some(e) if e.errorno != 0 => -e.errorno.abs(),
        Some(e) => e.result,
        None => 0,
    }
}

/// A `struct sockaddr` as the sandbox passed it (host byte order is little
/// endian for the family; ports and addresses are in network order).
pub fn parse_sockaddr(b: &[u8]) -> Option<SockAddr> {
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_le_bytes([b[0], b[1]]);
    match family {
        2 if b.len() >= 8 => Some(SockAddr::Inet {
            v6: false,
            address: std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]).to_string(),
            port: u16::from_be_bytes([b[2], b[3]]),
        }),
        10 if b.len() >= 24 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            Some(SockAddr::Inet {
                v6: true,
                address: std::net::Ipv6Addr::from(a).to_string(),
                port: u16::from_be_bytes([b[2], b[3]]),
            })
        }
        1 => {
            let path = &b[2..];
            let s = if path.first() == Some(&0) {
                // abstract namespace
                format!(
                    "@{}",
                    String::from_utf8_lossy(&path[1..]).trim_end_matches('\0')
                )
            } else {
                let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                String::from_utf8_lossy(&path[..end]).into_owned()
            };
            Some(SockAddr::Unix(s))
        }
        f => Some(SockAddr::Other(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `openat` point exactly as runsc 2022-12-19 sent it for
    /// `echo x > /tmp/out` (fd 3, O_WRONLY|O_CREAT|O_TRUNC).
    const OPENAT_TMP_OUT: &str = "0a0c20013205616374703242012f12020803188102209cffffffffffffffff0132082f746d702f6f757438c10440b603";
    /// `sentry/execve` of busybox `cat`, with the environment runsc always sends.
    const EXEC_CAT: &str = "0a0e2002320561637470323a0042012f120c2f62696e2f62757379626f781a036361741a132f776f726b73706163652f706c616e2e747874220753484c564c3d312206484f4d453d2f220a5445524d3d787465726d2241504154483d2f7573722f6c6f63616c2f7362696e3a2f7573722f6c6f63616c2f62696e3a2f7573722f7362696e3a2f7573722f62696e3a2f7362696e3a2f62696e22055057443d2f";

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_a_captured_openat() {
        let e = decode(kind::SYSCALL_OPEN, &hex(OPENAT_TMP_OUT)).unwrap();
        let Event::Open {
            ctx,
            dirfd,
            pathname,
            flags,
            result,
            ..
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(
            (ctx.tgid, ctx.container.as_str(), ctx.cwd.as_str()),
            (1, "actp2", "/")
        );
        assert_eq!(
            (dirfd, pathname.as_str(), flags, result),
            (-100, "/tmp/out", 0o1101, 3)
        );
    }

    #[test]
    fn decodes_a_captured_exec_without_its_environment() {
        let e = decode(kind::SENTRY_EXEC, &hex(EXEC_CAT)).unwrap();
        let Event::Exec { ctx, binary, argv } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(ctx.tgid, 2);
        assert_eq!(binary, "/bin/busybox");
        assert_eq!(argv, &["cat", "/workspace/plan.txt"]);
        assert_eq!((ctx.uid, ctx.gid), (Some(0), Some(0)));
        // the environment travelled in the message but was never decoded
        assert!(!format!("{e:?}").contains("PATH="));
    }

    #[test]
    fn sockaddrs() {
        let v4 = [2, 0, 0x1f, 0x90, 10, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_sockaddr(&v4),
            Some(SockAddr::Inet {
                v6: false,
                address: "10.1.2.3".into(),
                port: 8080
            })
        );
        let mut v6 = vec![10, 0, 0, 80, 0, 0, 0, 0];
        v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            parse_sockaddr(&v6),
            Some(SockAddr::Inet {
                v6: true,
                address: "::1".into(),
                port: 80
            })
        );
        let mut un = vec![1, 0];
        un.extend_from_slice(b"/run/docker.sock\0\0\0");
        assert_eq!(
            parse_sockaddr(&un),
            Some(SockAddr::Unix("/run/docker.sock".into()))
        );
        assert_eq!(
            parse_sockaddr(&[1, 0, 0, b'x']),
            Some(SockAddr::Unix("@x".into()))
        );
        assert_eq!(parse_sockaddr(&[16, 0, 0, 0]), Some(SockAddr::Other(16)));
        assert_eq!(parse_sockaddr(&[2]), None);
        assert_eq!(parse_sockaddr(&[2, 0, 1]), Some(SockAddr::Other(2)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for t in [1, 2, 3, 5, 7, 10, 24, 25] {
            assert!(decode(t, &[0xff, 0xff, 0xff]).is_err());
        }
        assert_eq!(decode(99, &[0xff]).unwrap(), Event::Other(99));
    }
}
