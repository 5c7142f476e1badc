//! The DWARF of a kernel relocatable object, as the differ needs it.
//!
//! - [`load`]: the `.debug_*` sections with their relocations applied; code addresses
//!   become synthetic (section, offset) addresses.
//! - [`die`]: one pass over `.debug_info` into a compact arena of DIEs.
//! - [`types`]: every struct, union, enum and typedef under a key that matches it across
//!   the original and the patched object, with its layout ([`types::Shape`]).
//! - [`diff`]: the layout changes between two objects.
//! - [`usage`]: which types have instances in the running kernel, and who uses a type.
//! - [`lines`]: source lines and inlined calls at an address.
//!
//! ```no_run
//! # fn f(obj: &kelf::Object) -> Result<(), debuginfo::Error> {
//! let width = |t: u32| (t == 1).then_some(8).or((t == 10).then_some(4));
//! if let Some(secs) = debuginfo::load::Sections::load(obj, &width)? {
//!     let dwarf = secs.dwarf();
//!     let dies = debuginfo::die::parse(&dwarf)?;
//!     let types = debuginfo::types::Types::new(&dies);
//!     println!("{} types", types.defs.len());
//! }
//! # Ok(()) }
//! ```

pub use gimli;

pub mod die;
pub mod diff;
pub mod lines;
pub mod load;
pub mod types;
pub mod usage;

/// Malformed or unsupported DWARF.
#[derive(Debug, Clone)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<gimli::Error> for Error {
    fn from(e: gimli::Error) -> Error {
        Error(format!("DWARF: {e}"))
    }
}
