//! The gVisor trace point messages agentbox reads, as prost structs written by
//! hand (no protoc in the build).
//!
//! Derived from gVisor's `pkg/sentry/seccheck/points/{common,container,sentry,
//! syscall}.proto`, Copyright 2022 The gVisor Authors, licensed under the
//! Apache License, Version 2.0. Only the fields agentbox uses are declared:
//! protobuf skips the others on decode. In particular the environment
//! (`ExecveInfo.env` = 4, `Start.env` = 5) is deliberately not declared, so it
//! is never decoded into agentbox's memory structures, let alone written.
//! Field numbers match runsc 2022-12-19 (wire version 1) and later releases.

/// Exchanged once in each direction when the sentry connects.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Handshake {
    #[prost(uint32, tag = "1")]
    pub version: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Credentials {
    #[prost(uint32, tag = "1")]
    pub real_uid: u32,
    #[prost(uint32, tag = "2")]
    pub effective_uid: u32,
    #[prost(uint32, tag = "4")]
    pub real_gid: u32,
    #[prost(uint32, tag = "5")]
    pub effective_gid: u32,
}

/// The context fields of a point (only those agentbox asks for are filled).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContextData {
    #[prost(int64, tag = "1")]
    pub time_ns: i64,
    /// Thread id in the sandbox's root PID namespace.
    #[prost(int32, tag = "2")]
    pub thread_id: i32,
    /// Thread group (process) id in the sandbox's root PID namespace.
    #[prost(int32, tag = "4")]
    pub thread_group_id: i32,
    #[prost(string, tag = "6")]
    pub container_id: String,
    #[prost(message, optional, tag = "7")]
    pub credentials: Option<Credentials>,
    #[prost(string, tag = "8")]
    pub cwd: String,
    #[prost(string, tag = "9")]
    pub process_name: String,
}

/// `container/start`: a container's init process was created.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Start {
    #[prost(message, optional, tag = "1")]
    pub context_data: Option<ContextData>,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(string, tag = "3")]
    pub cwd: String,
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
}

/// `sentry/clone`: a task created a thread or a process.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CloneInfo {
    #[prost(message, optional, tag = "1")]
    pub context_data: Option<ContextData>,
    #[prost(int32, tag = "3")]
    pub created_thread_id: i32,
    #[prost(int32, tag = "4")]
    pub created_thread_group_id: i32,
}

/// `sentry/execve`: a process switched to a new image.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecveInfo {
    #[prost(message, optional, tag = "1")]
    pub context_data: Option<ContextData>,
    #[prost(string, tag = "2")]
    pub binary_path: String,
    #[prost(string, repeated, tag = "3")]
    pub argv: Vec<String>,
}

/// `sentry/task_exit` and `sentry/exit_notify_parent`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskExit {
    #[prost(message, optional, tag = "1")]
    pub context_data: Option<ContextData>,
    /// The thread group's exit status as `wait(2)` reports it.
    #[prost(int32, tag = "2")]
    pub exit_status: i32,
}

/// A syscall's result (`*/exit` points only).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exit {
    #[prost(int64, tag = "1")]
    pub result: i64,
    #[prost(int64, tag = "2")]
    pub errorno: i64,
}

/// `syscall/open`, `openat`, `creat`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Open {
    #[prost(message, optional, tag = "1")]
    pub context_data: Option<ContextData>,
    #[prost(message, optional, tag = "2")]
    pub exit: Option<Exit>,
    #[prost(uint64, tag = "3")]
    pub sysno: u64,
    #[prost(int64, tag = "4")]
    pub fd: i64,
    /// The path of `fd` (the directory a relative `pathname` is resolved in).
    #[prost(string, tag = "5")]
    pub fd_path: String,
    #[prost(string, tag = "6")]
    pub pathname: String,
    #[prost(uint32, tag = "7")]
    pub flags: u32,
}

/// `syscall/connect` and `syscall/bind` (same field numbers).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SockAddrCall {
    #[prost(message, optional, tag = "1")]
    pub context_data: Option<ContextData>,
    #[prost(message, optional, tag = "2")]
    pub exit: Option<Exit>,
    #[prost(bytes = "vec", tag = "6")]
    pub address: Vec<u8>,
}

/// The message types of the remote sink's header that agentbox reads.
pub mod kind {
    pub const CONTAINER_START: u16 = 1;
    pub const SENTRY_CLONE: u16 = 2;
    pub const SENTRY_EXEC: u16 = 3;
    pub const SENTRY_EXIT_NOTIFY_PARENT: u16 = 4;
    pub const SENTRY_TASK_EXIT: u16 = 5;
    pub const SYSCALL_OPEN: u16 = 7;
    pub const SYSCALL_CONNECT: u16 = 10;
    pub const SYSCALL_BIND: u16 = 24;
    pub const SYSCALL_ACCEPT: u16 = 25;
}
