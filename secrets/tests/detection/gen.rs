//! Synthetic tokens: a deterministic generator and the charsets of the
//! formats. Nothing here is a real credential: bodies are pseudo-random from
//! a fixed seed, and long bodies start with a FAKE/fake marker where the
//! format's alphabet allows it. Tokens exist only while the tests run.

pub const DIGIT: &str = "0123456789";
pub const HEX: &str = "0123456789abcdef";

pub const LALNUM: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
pub const UALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const ALPHA: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
pub const ALNUM: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
pub const B64: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
pub const B64URL: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-";
pub const B64URLEQ: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-=";
pub const BECH32: &str = "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";

/// splitmix64
pub struct G(std::cell::Cell<u64>);

impl G {
    pub fn new(label: &str, k: u64) -> G {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in label.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
        G(std::cell::Cell::new(
            h ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    }

    pub fn next(&self) -> u64 {
        self.0.set(self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15));
        let mut z = self.0.get();
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `n` characters of `cs`, mixing letters and digits when `cs` has both,
    /// starting with a FAKE/fake marker when `n >= 24` and `cs` allows it.
    pub fn s(&self, cs: &str, n: usize) -> String {
        let c = cs.as_bytes();
        let mut out: Vec<u8> = (0..n).map(|_| c[self.below(c.len())]).collect();
        let has = |x: &[u8]| x.iter().all(|b| c.contains(b));
        if n >= 24 {
            if has(b"FAKE") {
                out[..4].copy_from_slice(b"FAKE");
            } else if has(b"fake") {
                out[..4].copy_from_slice(b"fake");
            }
        }
        if n >= 8 {
            let digits: Vec<u8> = c.iter().copied().filter(u8::is_ascii_digit).collect();
            let letters: Vec<u8> = c.iter().copied().filter(u8::is_ascii_alphabetic).collect();
            if !digits.is_empty() && !out.iter().any(u8::is_ascii_digit) {
                let i = n - 1 - self.below(n / 2);
                out[i] = digits[self.below(digits.len())];
            }
            if !letters.is_empty() && !out.iter().any(u8::is_ascii_alphabetic) {
                out[n / 2] = letters[self.below(letters.len())];
            }
        }
        String::from_utf8(out).unwrap()
    }

    pub fn pick<'a>(&self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }

    pub fn uuid(&self) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            self.s(HEX, 8),
            self.s(HEX, 4),
            self.s(HEX, 4),
            self.s(HEX, 4),
            self.s(HEX, 12)
        )
    }
}

/// CRC-32 (IEEE), bit by bit: an implementation independent of the crate's.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// GitHub's and npm's token body: 30 random base62 characters and their
/// CRC-32 in 6 base62 digits.
pub fn crc_body(g: &G) -> String {
    let data = g.s(ALNUM, 30);
    let mut n = crc32(data.as_bytes()) as u64;
    let digits = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut sum = [b'0'; 6];
    for k in (0..6).rev() {
        sum[k] = digits[(n % 62) as usize];
        n /= 62;
    }
    format!("{data}{}", std::str::from_utf8(&sum).unwrap())
}
