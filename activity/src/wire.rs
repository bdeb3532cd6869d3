//! The remote sink's wire format (gVisor `pkg/sentry/seccheck/sinks/remote`):
//! over a `SOCK_SEQPACKET` unix socket the sentry sends a protobuf
//! [`Handshake`] and waits for the sink's; then one datagram per point: an
//! 8-byte little-endian header (header size u16, message type u16, count of
//! points the sentry dropped so far u32) and the point's protobuf message.

use prost::Message;

use crate::proto::Handshake;

/// The protocol version agentbox speaks (the sentry accepts any ≥ 1).
pub const VERSION: u32 = 1;
/// The smallest header a frame may carry.
pub const HEADER_SIZE: usize = 8;
/// Largest datagram read: argv and paths are bounded by the sentry, and a
/// point larger than this is counted as dropped rather than allocated.
pub const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("header size {0} is out of range")]
    HeaderSize(u16),
    #[error("handshake is not a valid protobuf message: {0}")]
    Handshake(String),
    #[error("gVisor speaks remote sink version {0}; agentbox needs 1 or later")]
    Version(u32),
}

/// A frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub message_type: u16,
    /// Points the sentry dropped so far (wraps at `u32::MAX`).
    pub dropped: u32,
}

/// Split a frame into its header and payload. A header longer than 8 bytes
/// (a newer sentry) is skipped by its declared size.
pub fn parse_frame(frame: &[u8]) -> Result<(Header, &[u8]), WireError> {
    if frame.len() < HEADER_SIZE {
        return Err(WireError::Short(frame.len()));
    }
    let size = u16::from_le_bytes([frame[0], frame[1]]);
    if (size as usize) < HEADER_SIZE || size as usize > frame.len() {
        return Err(WireError::HeaderSize(size));
    }
    let header = Header {
        message_type: u16::from_le_bytes([frame[2], frame[3]]),
        dropped: u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]),
    };
    Ok((header, &frame[size as usize..]))
}

/// Check the sentry's handshake; the version it speaks.
pub fn read_handshake(msg: &[u8]) -> Result<u32, WireError> {
    let h = Handshake::decode(msg).map_err(|e| WireError::Handshake(e.to_string()))?;
    if h.version < 1 {
        return Err(WireError::Version(h.version));
    }
    Ok(h.version)
}

/// The sink's handshake reply.
pub fn handshake_reply() -> Vec<u8> {
    Handshake { version: VERSION }.encode_to_vec()
}

/// Build a frame (tests and tools that play the sentry's side).
pub fn frame(message_type: u16, dropped: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER_SIZE + payload.len());
    f.extend_from_slice(&(HEADER_SIZE as u16).to_le_bytes());
    f.extend_from_slice(&message_type.to_le_bytes());
    f.extend_from_slice(&dropped.to_le_bytes());
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let f = frame(7, 42, b"abc");
        let (h, p) = parse_frame(&f).unwrap();
        assert_eq!(
            h,
            Header {
                message_type: 7,
                dropped: 42
            }
        );
        assert_eq!(p, b"abc");
    }

    #[test]
    fn a_longer_header_is_skipped_by_its_size() {
        let mut f = frame(3, 1, b"");
        f[0] = 12;
        f.extend_from_slice(&[9, 9, 9, 9, b'x']);
        let (h, p) = parse_frame(&f).unwrap();
        assert_eq!(h.message_type, 3);
        assert_eq!(p, b"x");
    }

    #[test]
    fn bad_frames_are_errors() {
        assert_eq!(parse_frame(&[1, 2, 3]), Err(WireError::Short(3)));
        let mut f = frame(1, 0, b"");
        f[0] = 4;
        assert_eq!(parse_frame(&f), Err(WireError::HeaderSize(4)));
        f[0] = 200;
        assert_eq!(parse_frame(&f), Err(WireError::HeaderSize(200)));
    }

    #[test]
    fn handshake_as_runsc_sends_it() {
        // bytes captured from runsc 2022-12-19: version 1
        assert_eq!(read_handshake(&[0x08, 0x01]), Ok(1));
        assert_eq!(read_handshake(&[0x08, 0x02]), Ok(2));
        assert_eq!(read_handshake(&[]), Err(WireError::Version(0)));
        assert!(matches!(
            read_handshake(&[0xff]),
            Err(WireError::Handshake(_))
        ));
        assert_eq!(handshake_reply(), vec![0x08, 0x01]);
    }
}
