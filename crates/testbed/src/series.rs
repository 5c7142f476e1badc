//! Which kernel a test boots: a target the Debian layer resolves at run time (versions move
//! with security updates, so nothing is pinned here). The named ones are what the tests
//! use; any other target `debian::resolve` understands works too (`6.1.0-56-amd64`,
//! `trixie-rt`, …).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A kernel target: an alias (`6.1`, `6.12`, `trixie`, `trixie-cloud`) or an exact release.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KernelSeries(Cow<'static, str>);

impl KernelSeries {
    /// Debian 12's default kernel, 6.1 (`linux-image-amd64` of bookworm).
    pub const V6_1: KernelSeries = KernelSeries(Cow::Borrowed("6.1"));
    /// The 6.12 kernel Debian 12 carries (`linux-image-6.12-amd64`).
    pub const V6_12: KernelSeries = KernelSeries(Cow::Borrowed("6.12"));
    /// Debian 13's kernel (6.12, gcc-14, IBT), `amd64` flavour.
    pub const TRIXIE: KernelSeries = KernelSeries(Cow::Borrowed("trixie"));
    /// Debian 13's `cloud-amd64` flavour.
    pub const TRIXIE_CLOUD: KernelSeries = KernelSeries(Cow::Borrowed("trixie-cloud"));

    /// What `testbed prepare --series all` prepares.
    pub const ALL: [KernelSeries; 4] = [
        KernelSeries::V6_1,
        KernelSeries::V6_12,
        KernelSeries::TRIXIE,
        KernelSeries::TRIXIE_CLOUD,
    ];

    /// The target string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KernelSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for KernelSeries {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().trim_start_matches('v').replace('_', ".");
        debian::resolve::parse_target(&s).map_err(|e| Error::UnknownSeries(e.to_string()))?;
        Ok(KernelSeries(Cow::Owned(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        for s in KernelSeries::ALL {
            assert_eq!(s.as_str().parse::<KernelSeries>().unwrap(), s);
        }
        assert_eq!("v6_1".parse::<KernelSeries>().unwrap(), KernelSeries::V6_1);
        assert!("6.1.0-56-amd64".parse::<KernelSeries>().is_ok());
        assert!("sparc".parse::<KernelSeries>().is_err());
    }
}
