//! containerd's version as CRI reports it (`Version.runtime_version`).

use std::fmt;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ContainerdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ContainerdVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses `1.6.20~ds1`, `v2.1.9`, `2.1.9+unknown`, `1.7.24-1`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_start_matches('v');
        let mut nums = s
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|p| p.parse::<u32>().ok());
        let major = nums.next()??;
        let minor = nums.next().flatten()?;
        let patch = nums.next().flatten().unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }
}

impl fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_cri_reports() {
        assert_eq!(
            ContainerdVersion::parse("1.6.20~ds1"),
            Some(ContainerdVersion::new(1, 6, 20))
        );
        assert_eq!(
            ContainerdVersion::parse("v2.1.9"),
            Some(ContainerdVersion::new(2, 1, 9))
        );
        assert_eq!(
            ContainerdVersion::parse("2.1.9+unknown"),
            Some(ContainerdVersion::new(2, 1, 9))
        );
        assert_eq!(
            ContainerdVersion::parse("1.7"),
            Some(ContainerdVersion::new(1, 7, 0))
        );
        assert_eq!(ContainerdVersion::parse("banana"), None);
        assert_eq!(ContainerdVersion::parse(""), None);
    }
}
