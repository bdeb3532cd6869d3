//! Checksums some token formats carry, used to tell a well-formed token from a
//! look-alike (reported as [`crate::Finding::verified`]).

/// CRC-32 (IEEE 802.3, as zlib's `crc32`).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` in base 62 (digits, upper case, lower case), left-padded with `0` to `width`.
#[cfg(test)]
fn base62(mut n: u64, width: usize) -> String {
    let mut out = Vec::new();
    while n > 0 {
        out.push(BASE62[(n % 62) as usize]);
        n /= 62;
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn base62_decode(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |acc, &c| {
        let d = BASE62.iter().position(|&x| x == c)? as u64;
        acc.checked_mul(62)?.checked_add(d)
    })
}

/// The checksums a rule may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checksum {
    /// GitHub's and npm's token format: the body after the prefix ends with
    /// six base62 digits holding the CRC-32 of the 30 characters before them.
    Crc32Base62,
}

impl Checksum {
    pub fn parse(s: &str) -> Option<Checksum> {
        match s {
            "crc32-base62" => Some(Checksum::Crc32Base62),
            _ => None,
        }
    }

    /// Does `body` (the token without its prefix) carry a valid checksum?
    pub fn verify(self, body: &[u8]) -> bool {
        match self {
            Checksum::Crc32Base62 => {
                if body.len() != 36 {
                    return false;
                }
                let (data, sum) = body.split_at(30);
                base62_decode(sum) == Some(crc32(data) as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_known_values() {
        // the standard check value of CRC-32/ISO-HDLC
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn base62_round_trip() {
        for n in [0u64, 1, 61, 62, 0xCBF4_3926, u32::MAX as u64] {
            let s = base62(n, 6);
            assert_eq!(s.len(), 6);
            assert_eq!(base62_decode(s.as_bytes()), Some(n));
        }
    }

    #[test]
    fn verifies_crc32_base62() {
        let data = "abcdefghijklmnopqrstuvwxyzABCD";
        let good = format!("{data}{}", base62(crc32(data.as_bytes()) as u64, 6));
        assert!(Checksum::Crc32Base62.verify(good.as_bytes()));
        let mut bad = good.clone().into_bytes();
        bad[3] = b'Z';
        assert!(!Checksum::Crc32Base62.verify(&bad));
        assert!(!Checksum::Crc32Base62.verify(&good.as_bytes()[1..]));
    }
}
