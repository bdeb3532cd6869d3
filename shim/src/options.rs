//! Runtime options containerd hands to the shim.
//!
//! gVisor's and Kata's shims take their configuration file from
//! `runtimeoptions.v1.Options` (`type_url` 1, `config_path` 2, `config_body` 3):
//! `ctr run --runtime-config-path FILE` and a CRI runtime handler whose
//! `options` carry `ConfigPath` both produce it. containerd passes it in the
//! `Create` request's `options` and, for `start`, on stdin. This module decodes
//! it without pulling in containerd's Go protos: three string fields.

use containerd_shim_protos::protobuf::well_known_types::any::Any;

/// The decoded runtime options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    pub config_path: Option<String>,
    pub config_body: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("runtime options are not valid protobuf: {0}")]
    Malformed(&'static str),
    #[error("runtime options field {0} is not valid utf-8")]
    Utf8(u32),
}

const TYPE_NAME: &str = "runtimeoptions.v1.Options";

/// True if the `Any` carries `runtimeoptions.v1.Options`.
pub fn is_runtime_options(any: &Any) -> bool {
    any.type_url.rsplit('/').next() == Some(TYPE_NAME)
}

/// Decode the options from an `Any`; `Ok(None)` if it carries another type
/// (runc's options, for example), which agentbox ignores.
pub fn from_any(any: &Any) -> Result<Option<RuntimeOptions>, OptionsError> {
    if any.type_url.is_empty() || !is_runtime_options(any) {
        return Ok(None);
    }
    decode(&any.value).map(Some)
}

/// Decode the body of `runtimeoptions.v1.Options`.
pub fn decode(mut buf: &[u8]) -> Result<RuntimeOptions, OptionsError> {
    let mut out = RuntimeOptions::default();
    while !buf.is_empty() {
        let key = read_varint(&mut buf)?;
        let field = (key >> 3) as u32;
        let wire = key & 7;
        match wire {
            0 => {
                read_varint(&mut buf)?;
            }
            1 => {
                buf = buf
                    .get(8..)
                    .ok_or(OptionsError::Malformed("truncated fixed64"))?
            }
            5 => {
                buf = buf
                    .get(4..)
                    .ok_or(OptionsError::Malformed("truncated fixed32"))?
            }
            2 => {
                let len = usize::try_from(read_varint(&mut buf)?)
                    .map_err(|_| OptionsError::Malformed("length overflow"))?;
                let bytes = buf
                    .get(..len)
                    .ok_or(OptionsError::Malformed("truncated field"))?;
                buf = &buf[len..];
                if field == 2 || field == 3 {
                    let s = std::str::from_utf8(bytes).map_err(|_| OptionsError::Utf8(field))?;
                    let v = (!s.is_empty()).then(|| s.to_string());
                    if field == 2 {
                        out.config_path = v;
                    } else {
                        out.config_body = v;
                    }
                }
            }
            _ => return Err(OptionsError::Malformed("unsupported wire type")),
        }
    }
    Ok(out)
}

fn read_varint(buf: &mut &[u8]) -> Result<u64, OptionsError> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let (&b, rest) = buf
            .split_first()
            .ok_or(OptionsError::Malformed("truncated varint"))?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(OptionsError::Malformed("varint too long"))
}

/// Encode options (used by tests and by the shim backend, which hands
/// `ConfigPath` on to its delegate).
pub fn encode(opts: &RuntimeOptions) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |field: u64, s: &str| {
        push_varint(&mut out, (field << 3) | 2);
        push_varint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    };
    put(1, TYPE_NAME);
    if let Some(p) = &opts.config_path {
        put(2, p);
    }
    if let Some(b) = &opts.config_body {
        put(3, b);
    }
    out
}

/// Wrap options in an `Any` the way containerd's typeurl does.
pub fn to_any(opts: &RuntimeOptions) -> Any {
    Any {
        type_url: TYPE_NAME.to_string(),
        value: encode(opts),
        ..Default::default()
    }
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let o = RuntimeOptions {
            config_path: Some("/etc/agentbox/gvisor.toml".into()),
            config_body: None,
        };
        let any = to_any(&o);
        assert!(is_runtime_options(&any));
        assert_eq!(from_any(&any).unwrap(), Some(o));
    }

    #[test]
    fn prefixed_type_url_is_recognised() {
        let mut any = to_any(&RuntimeOptions {
            config_path: Some("/x".into()),
            config_body: None,
        });
        any.type_url = "type.googleapis.com/runtimeoptions.v1.Options".into();
        assert_eq!(
            from_any(&any).unwrap().unwrap().config_path.as_deref(),
            Some("/x")
        );
    }

    #[test]
    fn other_types_are_ignored() {
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![1, 2, 3],
            ..Default::default()
        };
        assert_eq!(from_any(&any).unwrap(), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[0x12, 0x05, b'a'][..],
            &[0xff; 11][..],
            &[0x13][..],
            &[0x12, 0x01, 0xff][..],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // field 4 varint, field 5 fixed32, then config_path
        let mut b = vec![0x20, 0x96, 0x01, 0x2d, 1, 2, 3, 4];
        b.extend(encode(&RuntimeOptions {
            config_path: Some("/p".into()),
            config_body: None,
        }));
        assert_eq!(decode(&b).unwrap().config_path.as_deref(), Some("/p"));
    }
}
