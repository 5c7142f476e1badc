//! # debian: the Debian archive for kpatch-rs
//!
//! The one Debian layer, used by kpatch-build and the test bed alike:
//!
//! - [`sources`]: the mirror URIs, read from the host's apt sources (never edited);
//! - [`apt`]: a private apt configuration (own sources, lists, state; the archive keyring)
//!   serving bookworm, bookworm-updates, bookworm-security, trixie, trixie-updates and
//!   trixie-security from those URIs;
//! - [`index`], [`resolve`]: the kernel packages of every suite, and a target (`trixie`,
//!   `6.1`, `6.12.118+deb13-cloud-amd64`, …) resolved to exact packages pinned to the image's
//!   Debian version ([`relation`] parses `Depends` with `=` pins and `|` alternatives,
//!   [`version`] orders versions as dpkg does);
//! - [`archive`]: verified downloads into one pool, including the `linux-kbuild-*` /
//!   `linux-source-*` of older point releases that the index no longer lists;
//! - [`unpack`]: a release's packages unpacked once ([`KernelFiles`]);
//! - [`buildroot`]: per-distribution build roots made with `mmdebstrap`, and commands run in
//!   them;
//! - [`cache`]: the shared cache, its size report and cleaning;
//! - [`vmlinuz`]: the ELF kernel inside an image package's `vmlinuz`.
//!
//! ```no_run
//! use debian::{Archive, Cache, KernelFiles, Options};
//! let cache = Cache::from_env();
//! let mut archive = Archive::open(&cache, Options::from_env())?;
//! let rel = archive.resolve("trixie")?;
//! let files = KernelFiles::new(&cache, rel);
//! let (headers, _warnings) = files.ensure_headers(&archive)?;
//! # Ok::<(), debian::Error>(())
//! ```

#![deny(missing_docs)]

pub mod apt;
pub mod archive;
pub mod buildroot;
pub mod cache;
pub mod deb822;
pub mod error;
pub mod index;
pub mod relation;
pub mod resolve;
pub mod sources;
pub mod unpack;
pub mod util;
pub mod version;
pub mod vmlinuz;

pub use archive::{Archive, Fetched, Options, Verified};
pub use buildroot::BuildRoot;
pub use cache::{Cache, Clean, SizeReport};
pub use error::{Error, Result};
pub use resolve::{Pkg, Release, Target};
pub use unpack::KernelFiles;
